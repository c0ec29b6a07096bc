//! `klaxon oncall` and `klaxon oncall check` as a user runs them: the shipped
//! example checks clean and matches its schema, a broken file is refused
//! with file and line, and who is on call follows the file.

mod common;

use std::process::Command;

use common::{KLAXON, repo_file, run};

fn klaxon(args: &[&str]) -> (bool, String, String) {
    run(Command::new(KLAXON).args(args))
}

#[test]
fn the_example_checks_clean_and_matches_its_schema() {
    let example = repo_file("docker/oncall.toml");
    // Checked from a fixed instant, so the gap check does not depend on
    // today's date; before its first rotation starts, nobody is on call.
    let check_from =
        |from: &str| klaxon(&["oncall", "check", example.to_str().unwrap(), "--from", from]);
    let (ok, stdout, stderr) = check_from("2026-11-25T00:00:00Z");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("OK (3 users, 1 schedules, 1 policies)"),
        "{stdout}"
    );
    assert_eq!(stderr, "", "no warnings either");
    let (ok, _, stderr) = check_from("2026-10-26T00:00:00Z");
    assert!(ok, "a gap is a warning: {stderr}");
    assert!(
        stderr.contains("nobody on call for") && stderr.contains("of the next 2 weeks"),
        "{stderr}"
    );

    let text = std::fs::read_to_string(&example).unwrap();
    let as_json = serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap()).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("schemas/oncall.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&as_json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let typo = serde_json::json!({"user": [{"id": "a", "contacts": []}]});
    assert!(
        !validator.is_valid(&typo),
        "the schema refuses what the parser refuses"
    );
}

#[test]
fn a_broken_file_is_refused_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oncall.toml");
    std::fs::write(
        &file,
        "[[user]]\nid = \"a\"\ncontact = [{ type = \"sms\", address = \"+15550100\" }]\n\n[[policy]]\nid = \"p\"\n[[policy.level]]\ntargets = [{ user = \"ghost\" }]\ndelay = \"5m\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = klaxon(&["oncall", "check", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "{}:7: error: policy \"p\" level 1: unknown user \"ghost\"",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn oncall_answers_who_and_until_when() {
    let example = repo_file("docker/oncall.toml");
    let file = example.to_str().unwrap();
    // Wednesday 25 November 2026, 10:00 Berlin: week 4 of the rotation
    // (alice, bob, carol from 2 November), so alice until the evening layer.
    let (ok, stdout, stderr) = klaxon(&["oncall", "--file", file, "--at", "2026-11-25T09:00:00Z"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "payments-primary\talice\tuntil 2026-11-25T17:00:00+00:00\n"
    );
    // The holiday override, merged with bob's own week after it.
    let (_, stdout, _) = klaxon(&[
        "oncall",
        "--file",
        file,
        "--schedule",
        "payments-primary",
        "--at",
        "2026-12-25T12:00:00Z",
    ]);
    assert_eq!(
        stdout,
        "payments-primary\tbob\tuntil 2026-12-28T08:00:00+00:00\n"
    );
    let (ok, _, stderr) = klaxon(&["oncall", "--file", file, "--schedule", "nope"]);
    assert!(!ok && stderr.contains("no schedule \"nope\""), "{stderr}");
}

/// Runs klaxon, killing it if it has not answered within a minute: a
/// question about a far instant once kept it busy for ever.
fn klaxon_answering(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(KLAXON)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("klaxon {args:?} gave no answer within a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn far_instants_are_answered_and_out_of_range_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oncall.toml");
    std::fs::write(
        &file,
        "[[user]]\nid = \"a\"\ncontact = [{ type = \"sms\", address = \"+15550100\" }]\n\
         [[user]]\nid = \"b\"\ncontact = [{ type = \"sms\", address = \"+15550101\" }]\n\
         [[user]]\nid = \"c\"\ncontact = [{ type = \"sms\", address = \"+15550102\" }]\n\
         [[schedule]]\nid = \"fast\"\ntime_zone = \"UTC\"\n\
         [[schedule.layer]]\nusers = [\"a\", \"b\", \"c\"]\nrotation = \"1m\"\nstart = \"2026-01-01T00:00:00\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    // A one-minute turn, about 2.6 billion turns after the start.
    let (ok, stdout, stderr) =
        klaxon_answering(&["oncall", "--file", file, "--at", "7000-01-01T00:00:00Z"]);
    assert!(ok, "{stderr}");
    let turns = (chrono::NaiveDate::from_ymd_opt(7000, 1, 1).unwrap()
        - chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())
    .num_minutes();
    let user = ["a", "b", "c"][(turns % 3) as usize];
    assert_eq!(
        stdout,
        format!("fast\t{user}\tuntil 7000-01-01T00:01:00+00:00\n")
    );
    // Before 1970, and past year 9999 (where `at` plus the 8 weeks looked
    // ahead once overflowed and panicked).
    for at in ["1969-12-31T23:59:59Z", "+262142-01-01T00:00:00Z"] {
        let (ok, _, stderr) = klaxon_answering(&["oncall", "--file", file, "--at", at]);
        assert!(!ok, "{at}");
        assert!(
            stderr.contains(
                "is out of range: klaxon answers for instants from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
            ),
            "{at}: {stderr}"
        );
    }
}
