//! `klaxon rules check` as data: each file under tests/rules_check/bad says
//! in `# expect: LINE: TEXT` comments which problems it must produce (and no
//! others); every file under good/ must produce none.

use std::{path::Path, process::Command};

use klaxon::rules::check_dir;

mod common;

use common::{KLAXON, repo_file, sorted_entries};

fn cases(dir: &str) -> std::path::PathBuf {
    repo_file("tests/rules_check").join(dir)
}

#[tokio::test]
async fn good_rules_pass() {
    let report = check_dir(&cases("good"), None).await.unwrap();
    assert_eq!(report.rules.len(), 3);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

#[tokio::test]
async fn each_bad_rule_file_gives_exactly_its_expected_problems() {
    let files = sorted_entries(&cases("bad"));
    assert!(files.len() >= 8);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected: Vec<(usize, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|e| {
                let (line, message) = e.split_once(": ").unwrap();
                (line.parse().unwrap(), message.to_owned())
            })
            .collect();
        // One file at a time, so duplicate names are checked within the file.
        let single = tempfile::tempdir().unwrap();
        std::fs::copy(&file, single.path().join("rules.toml")).unwrap();
        let report = check_dir(single.path(), None).await.unwrap();
        let found: Vec<(usize, String)> = report
            .problems
            .iter()
            .map(|p| (p.line, p.message.clone()))
            .collect();
        for (line, message) in &expected {
            assert!(
                found
                    .iter()
                    .any(|(l, m)| l == line && m.contains(message.as_str())),
                "{}: expected line {line}: {message}\nfound {found:#?}",
                file.display()
            );
        }
        assert_eq!(
            found.len(),
            expected.len(),
            "{}: {found:#?}",
            file.display()
        );
    }
}

#[test]
fn cli_prints_file_and_line_and_fails() {
    let out = Command::new(KLAXON)
        .args(["rules", "check"])
        .arg(cases("bad"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("windows.toml:3: rule \"gappy\": every (10m)"),
        "{err}"
    );
    assert!(err.contains("toml.toml:7: unknown field `windw`"), "{err}");

    let out = common::run_ok(
        Command::new(KLAXON)
            .args(["rules", "check"])
            .arg(cases("good")),
    );
    assert_eq!(out, "3 rules in 2 files: OK\n");
}

#[tokio::test]
async fn against_a_known_schema_an_unknown_tag_is_an_error() {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema};
    let mut fields = klaxon::points::base_fields();
    fields.push(Field::new("service", klaxon::rules::tag_type(), true));
    let known = Arc::new(Schema::new(fields));
    let text = "[[rule]]\nname = \"r\"\nwindow = \"1m\"\nseverity = \"info\"\nsql = \"SELECT servce, count(*) AS n FROM metrics GROUP BY servce\"\n";
    let (_, problems) =
        klaxon::rules::check_file(Path::new("r.toml"), text, Some(known.clone())).await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, 5);
    assert!(
        problems[0].message.contains("servce"),
        "{}",
        problems[0].message
    );
    assert!(
        problems[0].message.contains("service"),
        "suggests the real column: {}",
        problems[0].message
    );

    let fixed = text.replace("servce", "service");
    let (_, problems) = klaxon::rules::check_file(Path::new("r.toml"), &fixed, Some(known)).await;
    assert!(problems.is_empty(), "{problems:#?}");
}
