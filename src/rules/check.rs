//! `klaxon rules check`: every problem of every rule, with file, line and reason.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::{
    common::SchemaError,
    datasource::MemTable,
    error::DataFusionError,
    prelude::SessionContext,
    sql::sqlparser::{ast::Statement, dialect::GenericDialect, parser::Parser},
};

use super::definition::{Direction, Rule, RuleFile, Thresholds};
use crate::points::{base_fields, string_type};

/// One thing wrong with a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line the problem starts on.
    pub line: usize,
    pub rule: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(rule) = &self.rule {
            write!(f, "rule {rule:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub files: usize,
    /// Every rule read, in file order, problems or not.
    pub rules: Vec<Rule>,
    pub problems: Vec<Problem>,
}

/// Checks every `*.toml` file of `dir`. With `known`, the lake's schema, a
/// column that is neither a fixed column nor one of its tags is an error;
/// without it, any other column is taken to be a tag.
pub async fn check_dir(dir: &Path, known: Option<SchemaRef>) -> std::io::Result<CheckReport> {
    check_files(&rule_files(dir)?, known).await
}

/// The rule files a path names: the `*.toml` files of a directory, in name
/// order, or the file itself.
pub fn rule_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Checks the given files together (rule names must be unique across them).
pub async fn check_files(
    files: &[PathBuf],
    known: Option<SchemaRef>,
) -> std::io::Result<CheckReport> {
    let mut report = CheckReport::default();
    let mut names: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for file in files {
        let file = file.clone();
        let text = std::fs::read_to_string(&file)?;
        let (rules, problems) = check_file(&file, &text, known.clone()).await;
        report.files += 1;
        report.problems.extend(problems);
        for (rule, line) in rules {
            if let Some((first, first_line)) = names.get(&rule.name) {
                report.problems.push(Problem {
                    file: file.clone(),
                    line,
                    rule: Some(rule.name.clone()),
                    message: format!(
                        "the name is already used at {}:{first_line}",
                        first.display()
                    ),
                });
            } else {
                names.insert(rule.name.clone(), (file.clone(), line));
            }
            report.rules.push(rule);
        }
    }
    Ok(report)
}

/// Checks one file's text; returns the rules it defines (with their lines)
/// and every problem found.
pub async fn check_file(
    file: &Path,
    text: &str,
    known: Option<SchemaRef>,
) -> (Vec<(Rule, usize)>, Vec<Problem>) {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let parsed: RuleFile = match toml::from_str(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let problem = Problem {
                file: file.to_owned(),
                line: e.span().map_or(1, |s| line_of(s.start)),
                rule: None,
                message: e.message().trim().to_owned(),
            };
            return (Vec::new(), vec![problem]);
        }
    };
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for spanned in parsed.rule {
        let line = line_of(spanned.span().start);
        let rule = spanned.into_inner();
        let mut report = |at: usize, message: String| {
            problems.push(Problem {
                file: file.to_owned(),
                line: at,
                rule: Some(rule.name.clone()),
                message,
            })
        };
        for message in check_shape(&rule) {
            report(line, message);
        }
        let sql_line = line_of(rule.sql.span().start);
        match plan_output(rule.sql.get_ref(), known.clone()).await {
            Err(message) => report(sql_line, message),
            Ok(output) => {
                for (at, message) in check_against_output(&rule, &output, &line_of) {
                    report(at.unwrap_or(line), message);
                }
            }
        }
        rules.push((rule, line));
    }
    (rules, problems)
}

/// Durations, severities and thresholds, which need no SQL.
fn check_shape(rule: &Rule) -> Vec<String> {
    let mut out = Vec::new();
    if rule.name.trim().is_empty() {
        out.push("name must not be empty".to_owned());
    }
    let (window, every) = (rule.window, rule.every());
    if window.is_zero() {
        out.push("window must be longer than 0s".to_owned());
    }
    if every.is_zero() {
        out.push("every must be longer than 0s".to_owned());
    } else if every > window {
        out.push(format!(
            "every ({}) is longer than the window ({}): points between windows would never be seen",
            humantime::format_duration(every),
            humantime::format_duration(window)
        ));
    } else if window.as_millis() % every.as_millis() != 0 {
        out.push(format!(
            "window ({}) must be a whole number of steps (every = {})",
            humantime::format_duration(window),
            humantime::format_duration(every)
        ));
    }
    match (&rule.severity, &rule.thresholds) {
        (Some(_), Some(_)) => {
            out.push("give either severity or thresholds, not both".to_owned());
        }
        (None, None) => {
            out.push("give a severity, or thresholds that decide it".to_owned());
        }
        (None, Some(t)) => out.extend(check_thresholds(t.get_ref())),
        (Some(_), None) => {}
    }
    out
}

fn check_thresholds(t: &Thresholds) -> Vec<String> {
    let mut out = Vec::new();
    if t.warning.is_none() && t.critical.is_none() {
        out.push("thresholds need warning, critical or both".to_owned());
    }
    let worse = |a: f64, b: f64| match t.direction {
        Direction::Above => a > b,
        Direction::Below => a < b,
    };
    if let (Some(w), Some(c)) = (t.warning, t.critical)
        && worse(w, c)
    {
        out.push(format!(
            "warning ({w}) is past critical ({c}) for direction {:?}",
            t.direction
        ));
    }
    for (name, level, recovery) in [
        ("warning", t.warning, t.warning_recovery),
        ("critical", t.critical, t.critical_recovery),
    ] {
        match (level, recovery) {
            (None, Some(_)) => out.push(format!("{name}_recovery without {name}")),
            (Some(level), Some(recovery)) if worse(recovery, level) => out.push(format!(
                "{name}_recovery ({recovery}) must not be past {name} ({level}), or the alert could never clear"
            )),
            _ => {}
        }
    }
    out
}

/// A rule's SQL, planned: the table it reads and the rows it returns.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    /// `metrics` as the rule sees it: the fixed columns and the tags it names.
    pub(crate) input: SchemaRef,
    pub(crate) output: SchemaRef,
}

/// Plans the SQL against the `metrics` table and returns its output schema,
/// or why it cannot run as a rule.
async fn plan_output(sql: &str, known: Option<SchemaRef>) -> Result<SchemaRef, String> {
    plan(sql, known).await.map(|p| p.output)
}

/// Parses and plans a rule's SQL; see [`Planned`].
pub(crate) async fn plan(sql: &str, known: Option<SchemaRef>) -> Result<Planned, String> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| format!("SQL: {e}"))?;
    match statements.as_slice() {
        [Statement::Query(_)] => {}
        [] => return Err("SQL is empty".to_owned()),
        [other] => {
            return Err(format!(
                "SQL must be a single SELECT; found {}",
                other
                    .to_string()
                    .split_whitespace()
                    .next()
                    .unwrap_or("a statement")
            ));
        }
        _ => return Err("SQL must be a single SELECT, not several statements".to_owned()),
    }
    let strict = known.is_some();
    let mut fields: Vec<Field> = match known {
        Some(schema) => schema.fields().iter().map(|f| f.as_ref().clone()).collect(),
        None => base_fields(),
    };
    // Without a known schema, every column the SQL names beyond the fixed
    // ones is a tag; add them one by one as the planner asks for them.
    for _ in 0..64 {
        let schema = Arc::new(Schema::new(fields.clone()));
        // A bare context: no files, no URL tables, only this one table.
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema.clone(), vec![vec![]]).map_err(|e| e.to_string())?;
        ctx.register_table("metrics", Arc::new(table))
            .map_err(|e| e.to_string())?;
        match ctx.state().create_logical_plan(sql).await {
            Ok(plan) => {
                return Ok(Planned {
                    input: schema,
                    output: Arc::new(plan.schema().as_arrow().clone()),
                });
            }
            Err(e) => match missing_column(&e) {
                Some(column) if !strict && !fields.iter().any(|f| f.name() == &column) => {
                    fields.push(Field::new(column, string_type(), true));
                }
                _ => return Err(format!("SQL: {}", e.strip_backtrace())),
            },
        }
    }
    Err("SQL names too many columns".to_owned())
}

fn missing_column(e: &DataFusionError) -> Option<String> {
    match e.find_root() {
        DataFusionError::SchemaError(err, _) => match err.as_ref() {
            SchemaError::FieldNotFound { field, .. } => Some(field.name.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Thresholds and templates must name columns the SQL returns.
fn check_against_output(
    rule: &Rule,
    output: &Schema,
    line_of: &dyn Fn(usize) -> usize,
) -> Vec<(Option<usize>, String)> {
    let mut out = Vec::new();
    let numeric = |f: &Field| f.data_type().is_numeric();
    if let Some(t) = &rule.thresholds {
        let at = Some(line_of(t.span().start));
        match output.field_with_name(&t.get_ref().column) {
            Ok(f) if numeric(f) => {}
            Ok(f) => out.push((
                at,
                format!(
                    "threshold column {:?} is {}, not a number",
                    t.get_ref().column,
                    f.data_type()
                ),
            )),
            Err(_) => out.push((
                at,
                format!(
                    "threshold column {:?} is not in the SQL's result ({})",
                    t.get_ref().column,
                    column_list(output)
                ),
            )),
        }
    }
    let mut known: BTreeSet<String> = output.fields().iter().map(|f| f.name().clone()).collect();
    known.extend(rule.labels.keys().cloned());
    known.insert("value".to_owned());
    for template in [&rule.summary, &rule.description].into_iter().flatten() {
        for name in template_names(template.get_ref()) {
            if !known.contains(&name) {
                out.push((
                    Some(line_of(template.span().start)),
                    format!(
                        "template names {{{{{name}}}}}, which is neither a result column ({}), a label nor value",
                        column_list(output)
                    ),
                ));
            }
        }
    }
    if rule.thresholds.is_none() && !output.fields().iter().any(|f| numeric(f)) {
        out.push((
            None,
            "the SQL returns no numeric column to carry the value".to_owned(),
        ));
    }
    out
}

fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The names inside `{{ }}` of a template.
pub(crate) fn template_names(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        names.push(after[..end].trim().to_owned());
        rest = &after[end + 2..];
    }
    names
}

/// The data type of tag columns, for callers building a known schema.
pub fn tag_type() -> DataType {
    string_type()
}
