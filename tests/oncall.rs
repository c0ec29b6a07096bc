//! `klaxon oncall` and `klaxon oncall check` as a user runs them: the shipped
//! example checks clean and matches its schema, a broken file is refused
//! with file and line, and who is on call follows the file.

use std::process::Command;

const KLAXON: &str = env!("CARGO_BIN_EXE_klaxon");

fn root(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn klaxon(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(KLAXON).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_example_checks_clean_and_matches_its_schema() {
    let example = root("docker/oncall.toml");
    let (ok, stdout, stderr) = klaxon(&["oncall", "check", example.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("OK (3 users, 1 schedules, 1 policies)"),
        "{stdout}"
    );
    assert_eq!(stderr, "", "no warnings either");

    let text = std::fs::read_to_string(&example).unwrap();
    let as_json = serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap()).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root("schemas/oncall.schema.json")).unwrap())
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
    let example = root("docker/oncall.toml");
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
