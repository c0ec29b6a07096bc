//! Where a line's parser puts what it found: the line's points and tags,
//! checked (limits, reserved and duplicate tag keys) before the line reaches
//! the batch, all of it or none.

use std::borrow::Cow;

use super::{Limits, LineError, RejectReason};
use crate::points::{PointBatchBuilder, SeriesId, TagSetId, tag_column_name};

/// Tag pairs of one line, borrowed from the record where no unescaping was needed.
pub(crate) type Tags<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Where line parsers put what they found, checked before it reaches the batch.
pub(crate) struct LineSink<'b, 'a> {
    builder: &'b mut PointBatchBuilder,
    limits: Limits,
    /// The record's Kafka timestamp: the time of a point that carries none, so a
    /// replay decodes the same rows (wall-clock time would not).
    pub(crate) record_time_ms: i64,
    /// Scratch for the current line's tags, reused across lines of the record.
    pub(crate) tags: Tags<'a>,
    line_tags: LineTags<'a>,
    /// The name the line's points have, when its parser looked them up as a
    /// series ([`Self::known_series`]); one the batch did not know is
    /// stored once the line is good.
    series_name: Option<&'a str>,
    /// Points of the current line, committed to the batch only if the line is good.
    pending: Vec<(PointName<'a>, i64, f64)>,
    /// Reused to spell `measurement.field` names without an allocation per point.
    name_buf: String,
}

/// Where the current line's tags are.
#[derive(Debug, Clone, Copy)]
enum LineTags<'a> {
    /// In `tags`, read by a parser that keeps no spelling.
    Parsed,
    /// In `tags`, read from this spelling: the batch stores the set under it
    /// once the line is good.
    Spelled(&'a [u8]),
    /// A set the batch holds already, checked when it was stored; `tags` is
    /// empty.
    Known(TagSetId),
    /// A series the batch holds already: its name and tag set; `tags` is empty.
    Series(SeriesId),
}

/// A point's name as the line spells it.
#[derive(Debug)]
pub(crate) enum PointName<'a> {
    Whole(Cow<'a, str>),
    /// Influx `measurement` and `field`, named `measurement.field`.
    Joined(Cow<'a, str>, Cow<'a, str>),
}

impl<'b, 'a> LineSink<'b, 'a> {
    pub(super) fn new(
        builder: &'b mut PointBatchBuilder,
        limits: Limits,
        record_time_ms: i64,
    ) -> Self {
        Self {
            builder,
            limits,
            record_time_ms,
            tags: Vec::new(),
            line_tags: LineTags::Parsed,
            series_name: None,
            pending: Vec::new(),
            name_buf: String::new(),
        }
    }

    /// Forgets the previous line.
    pub(super) fn start_line(&mut self) {
        self.forget_tags();
        self.pending.clear();
    }

    /// Tells the sink the bytes that spell the line's tag set (see
    /// [`PointBatchBuilder::known_tag_set`] for what a spelling must be).
    /// True when the batch knows the spelling: the parser skips reading the
    /// tags. Otherwise it reads them into `tags`.
    pub(crate) fn known_tags(&mut self, spelling: &'a [u8]) -> bool {
        match self.builder.known_tag_set(spelling) {
            Some(set) => {
                self.line_tags = LineTags::Known(set);
                true
            }
            None => {
                self.line_tags = LineTags::Spelled(spelling);
                false
            }
        }
    }

    /// [`Self::known_tags`] for a line whose points are all named `name`
    /// (a parser that calls this queues no point of another name): the
    /// batch looks up the name and the tag set at once, as a series.
    pub(crate) fn known_series(&mut self, name: &'a str, spelling: &'a [u8]) -> bool {
        self.series_name = Some(name);
        if let Some(series) = self.builder.known_series(name, spelling) {
            self.line_tags = LineTags::Series(series);
            return true;
        }
        self.known_tags(spelling)
    }

    /// Empties `tags` and forgets any spelling or series: the line's tags
    /// are read again, from scratch.
    pub(crate) fn forget_tags(&mut self) {
        self.tags.clear();
        self.line_tags = LineTags::Parsed;
        self.series_name = None;
    }

    /// Queues one point of the current line.
    pub(crate) fn point(
        &mut self,
        name: PointName<'a>,
        time_ms: i64,
        value: f64,
    ) -> Result<(), LineError> {
        let (PointName::Whole(first) | PointName::Joined(first, _)) = &name;
        if first.is_empty() {
            return Err(LineError::new(
                RejectReason::MissingField,
                "empty metric name",
            ));
        }
        if !value.is_finite() {
            return Err(LineError::new(
                RejectReason::NonFiniteValue,
                format!("value {value} is not finite"),
            ));
        }
        if time_ms < self.limits.min_time_ms || time_ms > self.limits.max_time_ms {
            return Err(LineError::new(
                RejectReason::TimestampOutOfRange,
                format!("time {time_ms}ms is outside the accepted range"),
            ));
        }
        self.pending.push((name, time_ms, value));
        Ok(())
    }

    /// Checks the line's tags unless the batch holds them already, then
    /// appends the line.
    pub(super) fn commit_line(&mut self) -> Result<usize, LineError> {
        let n = self.pending.len();
        let (set, series) = match self.line_tags {
            LineTags::Series(series) => {
                self.check_kept_keys(self.builder.series_tags(series))?;
                (None, Some(series))
            }
            LineTags::Known(set) => {
                self.check_kept_keys(set)?;
                (Some(set), None)
            }
            LineTags::Spelled(spelling) => {
                self.check_tags()?;
                (Some(self.builder.add_tag_set(spelling, &self.tags)), None)
            }
            LineTags::Parsed => {
                self.check_tags()?;
                (None, None)
            }
        };
        // A series the batch did not know is stored once its line is good.
        let series = match (series, set, self.series_name) {
            (Some(series), _, _) => Some(series),
            (None, Some(set), Some(name)) => Some(self.builder.add_series(name, set)),
            _ => None,
        };
        if let Some(series) = series {
            for (name, time, value) in self.pending.drain(..) {
                debug_assert!(
                    matches!(&name, PointName::Whole(name) if Some(name.as_ref()) == self.series_name),
                    "a line looked up as one series queues points of its name only"
                );
                self.builder.push_series(series, time, value);
            }
            return Ok(n);
        }
        for (name, time, value) in self.pending.drain(..) {
            let name = match &name {
                PointName::Whole(name) => name.as_ref(),
                PointName::Joined(measurement, field) => {
                    self.name_buf.clear();
                    self.name_buf.push_str(measurement);
                    self.name_buf.push('.');
                    self.name_buf.push_str(field);
                    &self.name_buf
                }
            };
            match set {
                Some(set) => self.builder.push_tagged(name, time, value, set),
                None => self.builder.push(name, time, value, &self.tags),
            }
        }
        Ok(n)
    }

    /// Renames reserved tag keys, refuses duplicates and tag explosions.
    fn check_tags(&mut self) -> Result<(), LineError> {
        if self.tags.len() > self.limits.max_tags_per_point {
            return Err(LineError::new(
                RejectReason::TooManyTags,
                format!(
                    "{} tags exceed the limit of {} per point",
                    self.tags.len(),
                    self.limits.max_tags_per_point
                ),
            ));
        }
        for (key, _) in self.tags.iter_mut() {
            if key.is_empty() {
                return Err(LineError::new(RejectReason::InvalidSyntax, "empty tag key"));
            }
            if let Cow::Owned(renamed) = tag_column_name(key) {
                *key = Cow::Owned(renamed);
            }
        }
        if let Some(key) = first_duplicate(&self.tags) {
            return Err(LineError::new(
                RejectReason::DuplicateTag,
                format!("tag {key:?} appears twice"),
            ));
        }
        // Only a batch near the limit pays a lookup per tag to count new keys.
        let near_limit = self.builder.tag_columns() + self.tags.len() > self.limits.max_tag_keys;
        let new_keys = if near_limit {
            self.tags
                .iter()
                .filter(|(key, _)| !self.builder.has_tag_column(key))
                .count()
        } else {
            0
        };
        self.check_new_keys(new_keys)
    }

    /// The limit on a batch's tag keys, for a line of a stored tag set:
    /// the builder keeps sets from earlier batches (points::builder), and a
    /// set's keys may be new to this one. The set's other checks held when
    /// it was stored, and depend on its spelling alone.
    fn check_kept_keys(&self, set: TagSetId) -> Result<(), LineError> {
        let near_limit =
            self.builder.tag_columns() + self.builder.tag_set_len(set) > self.limits.max_tag_keys;
        if !near_limit {
            return Ok(());
        }
        self.check_new_keys(self.builder.columns_new_to_batch(set))
    }

    fn check_new_keys(&self, new_keys: usize) -> Result<(), LineError> {
        if new_keys > 0 && self.builder.tag_columns() + new_keys > self.limits.max_tag_keys {
            return Err(LineError::new(
                RejectReason::TooManyTags,
                format!(
                    "{new_keys} new tag keys would exceed the limit of {} distinct keys per batch",
                    self.limits.max_tag_keys
                ),
            ));
        }
        Ok(())
    }
}

/// The first key that appears twice. Linear in the tag count for long lines
/// (a hash set); a plain scan for the few tags most points carry.
fn first_duplicate<'t>(tags: &'t Tags<'_>) -> Option<&'t str> {
    if tags.len() <= 16 {
        return tags
            .iter()
            .enumerate()
            .find(|(i, (key, _))| tags[..*i].iter().any(|(k, _)| k == key))
            .map(|(_, (key, _))| key.as_ref());
    }
    let mut seen = std::collections::HashSet::with_capacity(tags.len());
    tags.iter()
        .map(|(key, _)| key.as_ref())
        .find(|key| !seen.insert(*key))
}
