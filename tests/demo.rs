//! `klaxon up --demo`, sped up: the story's steps happen and are printed in
//! order, the page goes to whoever the rotation has on call, and the
//! postmortem draft is written from the run's own data.

mod common;

use std::{fs::File, process::Command, time::Duration};

use common::*;

/// The story's lines, in order, as each begins.
const STEPS: [&str; 11] = [
    "checkout v2.4.0 is serving",
    "deploy: checkout v2.4.1 rolls out",
    "rule checkout_error_rate fired: incident ",
    "paged ",
    "nobody acknowledged in ",
    "maya asks ",
    "paged ",
    "maya acknowledged incident ",
    "rollback: ",
    "incident ",
    "postmortem draft: ",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_plays_the_whole_story_in_order() {
    let dir = test_dir();
    let started = chrono::Utc::now();
    let out = |port: u16| dir.path().join(format!("demo-{port}.out"));
    let (mut up, port) = spawn_listening("the demo's broker", |port| {
        let log = dir.path().join(format!("demo-{port}.log"));
        let child = Command::new(KLAXON)
            .current_dir(dir.path())
            .args([
                "up",
                "--demo",
                "--demo-speed",
                "5",
                "--data-dir",
                "data",
                "--broker-listen",
                &format!("127.0.0.1:{port}"),
                "--http-listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdout(File::create(out(port)).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc { child, log }
    })
    .await;
    let mut status = None;
    wait_until(Duration::from_secs(300), "the demo to end", async || {
        status = up.child.try_wait().unwrap();
        status.is_some()
    })
    .await;
    let printed = std::fs::read_to_string(out(port)).unwrap();
    assert!(status.unwrap().success(), "{printed}\n{}", up.log_text());
    let story: Vec<&str> = printed
        .lines()
        .filter_map(|l| l.split_once("] ").filter(|(t, _)| t.starts_with("[demo ")))
        .map(|(_, text)| text)
        .collect();
    assert_eq!(story.len(), STEPS.len(), "{printed}");
    for (line, step) in story.iter().zip(STEPS) {
        assert!(
            line.starts_with(step),
            "{line:?} is not {step:?}:\n{printed}"
        );
    }
    assert!(story[4].contains("paged maya"), "{}", story[4]);
    assert!(story[9].ends_with("resolved by maya"), "{}", story[9]);

    // The page went to whoever the demo's rotation has on call now.
    let demo_dir = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("demo-")
        })
        .unwrap();
    let oncall: klaxon::notify::OnCall =
        toml::from_str(&std::fs::read_to_string(demo_dir.join("oncall.toml")).unwrap()).unwrap();
    // Asked at the start and at the end, for a run across the weekly handover.
    let on_call_at = |t| {
        let now = klaxon::notify::queries::on_call_at(&oncall, Some("checkout-primary"), t);
        now[0].shift.as_ref().unwrap().user.clone().unwrap()
    };
    let on_call = [on_call_at(started), on_call_at(chrono::Utc::now())]
        .into_iter()
        .find(|u| story[3].starts_with(&format!("paged {u}, on call this week")))
        .unwrap_or_else(|| panic!("not the rotation's engineer: {}", story[3]));
    assert!(
        !story[6].starts_with(&format!("paged {on_call} ")),
        "help comes from someone else"
    );

    // The draft, from the lake of this run.
    let path = story[10].trim_start_matches("postmortem draft: ");
    let draft = std::fs::read_to_string(dir.path().join(path)).unwrap();
    let id = story[2]
        .trim_start_matches("rule checkout_error_rate fired: incident ")
        .split_whitespace()
        .next()
        .unwrap();
    assert!(draft.contains(&format!("| Incident | {id} ")), "{draft}");
    assert!(
        draft.contains("| Time to acknowledge |") && draft.contains(" by maya |"),
        "{draft}"
    );
    assert!(draft.contains(&format!("{on_call} by console")), "{draft}");
    assert!(
        draft.contains("| first breach |"),
        "the rule was run again:\n{draft}"
    );
    assert!(
        !draft.contains("holds no points"),
        "nothing missing:\n{draft}"
    );
    assert!(!draft.contains("No chart"), "{draft}");
}
