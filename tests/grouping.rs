//! Grouping through a real broker and `klaxon notify`: a burst of 50
//! alerts for one service, spread over every paging partition, becomes one
//! page and one update, not 50 pages. The page names the alerts that came
//! within `group_wait`; the update names only the alerts that joined after
//! it, never the whole group again (Alertmanager #3059). What the group
//! was told survives kill -9 of the notifier: after a restart, alerts that
//! resolve come in an update naming only them.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::*;
use serde_json::json;

const ROUTE: &str = r#"
[[route]]
id = "checkout"
match = ["service=checkout"]
group_by = ["service"]
group_wait = "3s"
group_interval = "5s"
"#;

/// Sends a trigger for `dedup_key` of service checkout to paging
/// partition `partition`.
async fn trigger_on(s: &Setup, partition: i32, dedup_key: &str) {
    let event = json!({
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "labels": { "service": "checkout" },
        "payload": { "summary": "checkout errors", "source": "test", "severity": "error" },
    });
    s.produce_to(partition, event).await;
}

/// Every message the recording server received: (event, message).
fn messages(s: &Setup) -> Vec<(String, String)> {
    s.recorder
        .requests()
        .iter()
        .map(|r| {
            let body = r.json();
            let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
            (text("event"), text("message"))
        })
        .collect()
}

/// The alert names a page or an update lists after `marker` (up to " and
/// N more" or the end of the line).
fn listed(message: &str, marker: &str) -> BTreeSet<String> {
    let Some(at) = message.find(marker) else {
        return BTreeSet::new();
    };
    let rest = &message[at + marker.len()..];
    let end = [" and ", ")", ";", "\n"]
        .iter()
        .filter_map(|stop| rest.find(stop))
        .min()
        .unwrap_or(rest.len());
    rest[..end].split(", ").map(str::to_owned).collect()
}

/// "N alerts firing" or "N joined": N.
fn count_before(message: &str, word: &str) -> usize {
    let at = message
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} in {message}"));
    let digits: String = message[..at]
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_fifty_alerts_is_one_page_and_one_update() {
    let s = Setup::new().await;
    // Nobody escalates within the test: only the group's messages count.
    s.edit_oncall(|text| text.replace("delay = \"3s\"", "delay = \"1h\"") + ROUTE);
    let check = s.klaxon(&["oncall", "check", s.oncall.to_str().unwrap()]);
    assert!(!check.contains("error"), "{check}");
    let mut notifier = s.notifier("notify.log").await;

    let keys: Vec<String> = (0..50).map(|i| format!("checkout-{i:02}")).collect();
    for (i, key) in keys[..20].iter().enumerate() {
        trigger_on(&s, i as i32 % 4, key).await;
    }
    wait_until(Duration::from_secs(60), "the group paged", async || {
        messages(&s).iter().any(|(event, _)| event == "page")
    })
    .await;
    for (i, key) in keys[20..].iter().enumerate() {
        trigger_on(&s, i as i32 % 4, key).await;
    }
    wait_until(Duration::from_secs(60), "the group's update", async || {
        messages(&s).iter().any(|(event, _)| event == "update")
    })
    .await;
    // Two group intervals more: nothing else may come.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let all = messages(&s);
    let events: Vec<&str> = all.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(events, ["page", "update"], "{all:#?}");
    let (page, update) = (&all[0].1, &all[1].1);
    let firing = count_before(page, "alerts firing");
    let joined = count_before(update, "joined");
    assert_eq!(firing + joined, 50, "page: {page}\nupdate: {update}");
    assert!(firing >= 20, "the first 20 came within group_wait: {page}");
    assert!(!update.contains("resolved"), "{update}");
    let in_page = listed(page, "alerts firing: ");
    let in_update = listed(update, "joined (");
    assert!(
        !in_page.is_empty() && !in_update.is_empty(),
        "{page}\n{update}"
    );
    assert!(
        in_page.is_disjoint(&in_update),
        "the update names alerts the page did: {page}\n{update}"
    );
    assert!(in_page.iter().all(|k| keys[..20].contains(k)), "{page}");
    assert!(in_update.iter().all(|k| keys[20..].contains(k)), "{update}");

    // Every other alert's incident says where it went, and paged nobody.
    let leader = page
        .split("(incident ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the page names its incident")
        .to_owned();
    let detail = s.klaxon(&["incident", "checkout-49"]);
    assert!(
        detail.contains(&format!("suppressed by grouped into incident {leader}")),
        "{detail}"
    );
    assert!(!detail.contains("Escalated"), "{detail}");
    let detail = s.klaxon(&["incident", &leader]);
    assert!(detail.contains("50 alerts firing"), "{detail}");

    // kill -9, a new notifier, five alerts resolve: updates name them and
    // nothing else (on the group's beat, they may straddle two updates).
    notifier.kill();
    let _notifier = s.notifier("notify-2.log").await;
    for (i, key) in keys[20..25].iter().enumerate() {
        let event = json!({ "event_action": "resolve", "dedup_key": key });
        s.produce_to(i as i32 % 4, event).await;
    }
    wait_until(
        Duration::from_secs(60),
        "the updates after the restart",
        async || messages(&s).iter().any(|(_, m)| m.contains("45 firing")),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let all = messages(&s);
    let after: Vec<&(String, String)> = all[2..].iter().collect();
    assert!(
        (1..=2).contains(&after.len()) && after.iter().all(|(e, _)| e == "update"),
        "{all:#?}"
    );
    let resolved: BTreeSet<String> = after
        .iter()
        .flat_map(|(_, m)| listed(m, "resolved ("))
        .collect();
    assert_eq!(
        resolved,
        keys[20..25].iter().cloned().collect::<BTreeSet<_>>(),
        "{all:#?}"
    );
    assert!(after.iter().all(|(_, m)| !m.contains("joined")), "{all:#?}");
    assert!(after.last().unwrap().1.contains("45 firing"), "{all:#?}");
}
