//! The `incidents` table's rows: one per timeline entry, with the incident's
//! identity beside it and one column per label key, as `metrics` has one per
//! tag key.

use std::{collections::BTreeMap, sync::Arc};

use arrow::{
    array::{
        ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, StringDictionaryBuilder,
        TimestampMillisecondBuilder,
    },
    compute::{SortColumn, lexsort_to_indices, take_record_batch},
    datatypes::{DataType, Field, Int32Type, Schema},
    error::ArrowError,
};

use crate::{
    notify::{Incident, incident::Entry},
    points::{TIME, string_type, time_type},
};

pub const INCIDENT_ID: &str = "incident_id";
pub const SEQ: &str = "seq";
pub const EVENT: &str = "event";

/// Label columns one flush writes at most; the rest of an incident's labels
/// are still in its `labels` column, as JSON. Like ingest's tag-key limit,
/// it bounds the width of every file whatever a rule's labels hold.
pub const MAX_LABEL_COLUMNS: usize = 64;

/// A label whose key is a fixed column's name (or a partition column's) is
/// stored under this prefix: the label `rule` is the column `label_rule`.
pub const RESERVED_LABEL_PREFIX: &str = "label_";

/// The columns every file of `incidents` has, in this order; label columns
/// follow in key order.
pub fn fixed_fields() -> Vec<Field> {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let repeated = |name: &str, nullable| Field::new(name, string_type(), nullable);
    vec![
        Field::new(TIME, time_type(), false),
        repeated(INCIDENT_ID, false),
        // The entry's number in its incident's whole history, from 0.
        Field::new(SEQ, DataType::Int64, false),
        repeated(EVENT, false),
        text("dedup_key", false),
        repeated("rule", true),
        repeated("severity", false),
        text("summary", false),
        repeated("actor", true),
        repeated("user", true),
        repeated("channel", true),
        text("result", true),
        repeated("purpose", true),
        Field::new("level", DataType::Int32, true),
        text("detail", false),
        // Every label, as a JSON object.
        text("labels", false),
    ]
}

/// The column a label key is stored in.
pub fn label_column_name(key: &str) -> String {
    let taken = fixed_fields().iter().any(|f| f.name() == key)
        || key == "date"
        || key == "hour"
        || key.starts_with(RESERVED_LABEL_PREFIX);
    if taken {
        format!("{RESERVED_LABEL_PREFIX}{key}")
    } else {
        key.to_owned()
    }
}

/// The sort order of every file: by time, then incident and entry number.
pub(super) fn sort_order() -> [usize; 3] {
    [0, 1, 2]
}

/// One entry of one incident, as it becomes a row.
#[derive(Debug, Clone)]
struct Row {
    time: i64,
    incident_id: String,
    seq: i64,
    event: String,
    dedup_key: String,
    rule: Option<String>,
    severity: String,
    summary: String,
    entry: Entry,
    labels: Arc<BTreeMap<String, String>>,
    /// `labels` as JSON, made once per incident version.
    labels_json: Arc<str>,
}

/// Rows gathered for one flush.
#[derive(Debug, Default)]
pub struct IncidentRows {
    rows: Vec<Row>,
    /// Roughly what the rows hold, for the flush size.
    bytes: usize,
}

impl IncidentRows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
    }

    /// Adds the entries of `incident` numbered past `after` (all of them
    /// when `None`). Returns the highest number added.
    pub fn add(&mut self, incident: &Incident, after: Option<u64>) -> Option<u64> {
        let labels = Arc::new(incident.labels.clone());
        let labels_json: Arc<str> = serde_json::to_string(&incident.labels)
            .expect("labels serialise")
            .into();
        let mut highest = None;
        for (seq, entry) in incident.numbered_timeline() {
            if after.is_some_and(|a| seq <= a) {
                continue;
            }
            // Each row's own copy of its texts in the Arrow batch; labels
            // are shared here but written out per row.
            self.bytes += 128
                + entry.detail.len()
                + incident.summary.len()
                + incident.dedup_key.len()
                + 2 * labels_json.len();
            self.rows.push(Row {
                time: entry.at.timestamp_millis(),
                incident_id: incident.id.clone(),
                seq: i64::try_from(seq).unwrap_or(i64::MAX),
                event: serde_json::to_value(entry.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                dedup_key: incident.dedup_key.clone(),
                rule: incident.rule.clone(),
                severity: incident.severity.as_str().to_owned(),
                summary: incident.summary.clone(),
                entry: entry.clone(),
                labels: Arc::clone(&labels),
                labels_json: Arc::clone(&labels_json),
            });
            highest = Some(seq);
        }
        highest
    }

    /// The rows as one batch sorted by [`sort_order`], and the label keys
    /// left out of their own columns by [`MAX_LABEL_COLUMNS`].
    pub fn finish(&self) -> Result<(RecordBatch, usize), ArrowError> {
        let mut keys: Vec<&String> = self.rows.iter().flat_map(|r| r.labels.keys()).collect();
        keys.sort();
        keys.dedup();
        let left_out = keys.len().saturating_sub(MAX_LABEL_COLUMNS);
        keys.truncate(MAX_LABEL_COLUMNS);

        let n = self.rows.len();
        let mut time = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let dict = || StringDictionaryBuilder::<Int32Type>::new();
        let text = || StringBuilder::new();
        let (mut id, mut event, mut rule, mut severity) = (dict(), dict(), dict(), dict());
        let (mut actor, mut user, mut channel, mut purpose) = (dict(), dict(), dict(), dict());
        let (mut dedup, mut summary, mut result, mut detail, mut labels) =
            (text(), text(), text(), text(), text());
        let mut seq = Int64Builder::with_capacity(n);
        let mut level = Int32Builder::with_capacity(n);
        let mut label_columns: Vec<StringDictionaryBuilder<Int32Type>> =
            keys.iter().map(|_| dict()).collect();
        for r in &self.rows {
            let facts = &r.entry.facts;
            time.append_value(r.time);
            id.append_value(&r.incident_id);
            seq.append_value(r.seq);
            event.append_value(&r.event);
            dedup.append_value(&r.dedup_key);
            rule.append_option(r.rule.as_deref());
            severity.append_value(&r.severity);
            summary.append_value(&r.summary);
            actor.append_option(facts.actor.as_deref());
            user.append_option(facts.user.as_deref());
            channel.append_option(facts.channel.as_deref());
            result.append_option(facts.result.as_deref());
            purpose.append_option(facts.purpose.as_deref());
            level.append_option(facts.level.map(|l| i32::try_from(l).unwrap_or(i32::MAX)));
            detail.append_value(&r.entry.detail);
            labels.append_value(&r.labels_json);
            for (key, column) in keys.iter().zip(&mut label_columns) {
                column.append_option(r.labels.get(*key).map(String::as_str));
            }
        }
        let mut fields = fixed_fields();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(time.finish()),
            Arc::new(id.finish()),
            Arc::new(seq.finish()),
            Arc::new(event.finish()),
            Arc::new(dedup.finish()),
            Arc::new(rule.finish()),
            Arc::new(severity.finish()),
            Arc::new(summary.finish()),
            Arc::new(actor.finish()),
            Arc::new(user.finish()),
            Arc::new(channel.finish()),
            Arc::new(result.finish()),
            Arc::new(purpose.finish()),
            Arc::new(level.finish()),
            Arc::new(detail.finish()),
            Arc::new(labels.finish()),
        ];
        // Distinct keys make distinct names: a prefixed key is prefixed
        // again (`label_x` is `label_label_x`).
        for (key, mut column) in keys.iter().zip(label_columns) {
            fields.push(Field::new(label_column_name(key), string_type(), true));
            columns.push(Arc::new(column.finish()));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let order: Vec<SortColumn> = sort_order()
            .iter()
            .map(|&i| SortColumn {
                values: Arc::clone(batch.column(i)),
                options: None,
            })
            .collect();
        let indices = lexsort_to_indices(&order, None)?;
        Ok((take_record_batch(&batch, &indices)?, left_out))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::{
        array::{Array, AsArray},
        datatypes::Int64Type,
    };
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::{
        notify::{OnCall, Opening, incident::TIMELINE_TAIL},
        paging::Severity,
    };

    fn opened(labels: &[(&str, &str)]) -> (Incident, DateTime<Utc>) {
        let now = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .unwrap()
            .to_utc();
        let opening = Opening {
            dedup_key: "errors{service=checkout}".into(),
            summary: "checkout errors".into(),
            severity: Severity::Critical,
            source: None,
            policy: None,
            target: None,
            rule: Some("errors".into()),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        (Incident::open(opening, now, &OnCall::default()), now)
    }

    fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
        let column = batch.column_by_name(column).unwrap();
        let column = arrow::compute::cast(column, &DataType::Utf8).unwrap();
        let column = column.as_string::<i32>();
        (0..column.len())
            .map(|i| column.is_valid(i).then(|| column.value(i).to_owned()))
            .collect()
    }

    /// Versions read every `every` changes, as the writer reads the
    /// changelog: each entry lands once, numbered as it was created, even
    /// after the timeline starts leaving entries out.
    fn history_read_every(every: usize) -> Vec<i64> {
        let (mut incident, now) = opened(&[]);
        let mut rows = IncidentRows::default();
        let mut written: HashMap<String, u64> = HashMap::new();
        let mut read = |incident: &Incident, rows: &mut IncidentRows| {
            if let Some(h) = rows.add(incident, written.get(&incident.id).copied()) {
                written.insert(incident.id.clone(), h);
            }
        };
        read(&incident, &mut rows);
        for n in 1..300 {
            incident.retrigger(
                "checkout errors",
                Severity::Critical,
                now + Duration::seconds(n),
            );
            if n as usize % every == 0 {
                read(&incident, &mut rows);
            }
        }
        read(&incident, &mut rows);
        assert!(incident.elided > 0, "the timeline left entries out");
        let (batch, _) = rows.finish().unwrap();
        let details = strings(&batch, "detail");
        let seqs: Vec<i64> = batch
            .column_by_name(SEQ)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        // Opening logs two entries (the trigger, and nobody to page), so
        // entry n from 2 on is the trigger that says "trigger n".
        for (seq, detail) in seqs.iter().zip(&details).skip(2) {
            assert_eq!(detail.as_deref(), Some(format!("trigger {seq}").as_str()));
        }
        seqs
    }

    #[test]
    fn every_entry_lands_once_with_its_number_while_the_timeline_elides() {
        let all: Vec<i64> = (0..301).collect();
        assert_eq!(history_read_every(1), all);
        assert_eq!(history_read_every(TIMELINE_TAIL - 1), all);
    }

    #[test]
    fn entries_left_out_between_two_reads_are_missing_not_duplicated() {
        let seqs = history_read_every(TIMELINE_TAIL + 30);
        let mut sorted = seqs.clone();
        sorted.dedup();
        assert_eq!(sorted, seqs, "no entry twice");
        assert!(seqs.len() < 301, "the module docs say what is lost");
    }

    #[test]
    fn labels_are_columns_and_reserved_keys_are_prefixed() {
        let (mut incident, now) = opened(&[
            ("service", "checkout"),
            ("rule", "shadow"),
            ("label_x", "y"),
            ("hour", "3"),
        ]);
        incident.resolve("alice", now + Duration::minutes(5));
        let mut rows = IncidentRows::default();
        assert_eq!(rows.add(&incident, None), Some(2));
        assert_eq!(rows.add(&incident, Some(2)), None, "nothing past 2");
        let (batch, left_out) = rows.finish().unwrap();
        assert_eq!(left_out, 0);
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .skip(fixed_fields().len())
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            ["label_hour", "label_label_x", "label_rule", "service"]
        );
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            strings(&batch, "rule"),
            [some("errors"), some("errors"), some("errors")]
        );
        assert_eq!(strings(&batch, "label_rule")[0].as_deref(), Some("shadow"));
        assert_eq!(
            strings(&batch, EVENT),
            [some("triggered"), some("nobody_on_call"), some("resolved")]
        );
        assert_eq!(strings(&batch, "actor"), [None, None, some("alice")]);
        assert_eq!(
            strings(&batch, "labels")[0].as_deref(),
            Some(r#"{"hour":"3","label_x":"y","rule":"shadow","service":"checkout"}"#)
        );
    }

    #[test]
    fn label_columns_are_bounded() {
        let many: Vec<(String, String)> = (0..MAX_LABEL_COLUMNS + 10)
            .map(|i| (format!("k{i:03}"), "v".to_owned()))
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (incident, _) = opened(&refs);
        let mut rows = IncidentRows::default();
        rows.add(&incident, None);
        let (batch, left_out) = rows.finish().unwrap();
        assert_eq!(left_out, 10);
        assert_eq!(
            batch.num_columns(),
            fixed_fields().len() + MAX_LABEL_COLUMNS
        );
        assert!(
            strings(&batch, "labels")[0]
                .as_deref()
                .unwrap()
                .contains("k073")
        );
    }
}
