//! Named crash points, for tests that prove a recovery path.
//!
//! `crash::point("flush.before_commit")` aborts the process (as kill -9
//! would: no unwinding, no flush, no destructor) when the environment
//! variable `KLAXON_CRASH_AT` names that point, and does nothing otherwise.
//! `KLAXON_CRASH_AT=write.before_rename:2` aborts at the second arrival, so
//! a test can pick, say, the first data file of a flush rather than the
//! in-flight marker written before it. The variable is read once. Tests set
//! it on the klaxon process they start, then restart it without and check
//! what recovery did.
//!
//! With `KLAXON_STALL_FOR=8s` as well, the point blocks its thread that
//! long instead of aborting: a stop-the-world pause or a hung disk, long
//! enough for the consumer group to move on without this member.
//!
//! The points (the README's Guarantees section says which test uses each):
//! - `flush.after_marker`: a flush's in-flight marker is durable, no data
//!   file is written yet;
//! - `write.before_rename`: a file's bytes are synced under a temporary name
//!   (local lakes only: object stores have no rename; column markers, whose
//!   count per flush varies, do not pass it or the next);
//! - `write.before_dir_sync`: the file is renamed, its directory not synced;
//! - `flush.before_commit`: every file of a flush is durable, its offsets
//!   are not committed;
//! - `flush.after_commit`: the offsets are committed, the marker still names
//!   the files;
//! - `ingest.after_revoke`: the group took partitions away from this member,
//!   which dropped their buffers and committed nothing;
//! - `compact.after_output`, `compact.after_first_delete`: compaction;
//! - `rules.after_publish`: alert events are published, the checkpoint that
//!   records them is not written;
//! - `notify.after_position`: paging events are applied and the changelog
//!   records how far, their offsets are not committed;
//! - `notify.after_send`: a page is delivered, its `Sent` record not written;
//! - `history.before_commit`: a flush of timeline entries is durable in the
//!   lake's `incidents` table, the changelog offsets they came from are not
//!   committed (flushes that hold no entries do not pass it).

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// What to do at a point, and at which arrival (1 = the first).
struct Target {
    name: String,
    arrival: u64,
    arrived: AtomicU64,
    /// Stall this long instead of aborting (`KLAXON_STALL_FOR`).
    stall: Option<Duration>,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let spec = std::env::var("KLAXON_CRASH_AT").ok()?;
            let (name, arrival) = match spec.rsplit_once(':') {
                // A typo must not crash somewhere the test did not mean.
                Some((name, n)) => (
                    name,
                    n.parse()
                        .unwrap_or_else(|_| panic!("KLAXON_CRASH_AT={spec}: not POINT:N")),
                ),
                None => (spec.as_str(), 1),
            };
            let stall = std::env::var("KLAXON_STALL_FOR").ok().map(|d| {
                humantime::parse_duration(&d)
                    .unwrap_or_else(|e| panic!("KLAXON_STALL_FOR={d}: {e}"))
            });
            Some(Target {
                name: name.to_owned(),
                arrival,
                arrived: AtomicU64::new(0),
                stall,
            })
        })
        .as_ref()
}

/// Aborts here if `KLAXON_CRASH_AT` names `name` and this is the arrival it
/// asks for; with `KLAXON_STALL_FOR` set, blocks the thread that long
/// instead, as a stop-the-world pause or a hung disk would.
pub fn point(name: &'static str) {
    let Some(target) = target() else { return };
    if target.name != name {
        return;
    }
    let arrival = target.arrived.fetch_add(1, Ordering::SeqCst) + 1;
    if arrival != target.arrival {
        return;
    }
    match target.stall {
        Some(stall) => {
            eprintln!("klaxon: crash point {name} reached: stalling {stall:?}");
            std::thread::sleep(stall);
        }
        None => {
            eprintln!("klaxon: crash point {name} reached: aborting");
            std::process::abort();
        }
    }
}
