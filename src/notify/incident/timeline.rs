//! The timeline: entries appended with their facts, each bounded, and the
//! whole kept within a changelog record by leaving out the middle (see the
//! module docs of `incident`), with every entry's number in the incident's
//! history, which the lake's `incidents` table is written by. A second
//! `impl Incident`.

use chrono::{DateTime, Utc};

use super::{
    Entry, EntryKind, Facts, Incident, MAX_DETAIL_BYTES, MAX_FACT_BYTES, TIMELINE_HEAD,
    TIMELINE_TAIL,
};
use crate::paging::limits::cut_json;

impl Incident {
    /// Adds an entry; past the bound, the oldest entry after the head goes
    /// into the `elided` count.
    pub(super) fn log(&mut self, at: DateTime<Utc>, kind: EntryKind, detail: String) {
        self.log_facts(at, kind, detail, Facts::default());
    }

    /// [`Self::log`] with the entry's facts, each bounded like the detail.
    pub(super) fn log_facts(
        &mut self,
        at: DateTime<Utc>,
        kind: EntryKind,
        mut detail: String,
        mut facts: Facts,
    ) {
        cut_json(&mut detail, MAX_DETAIL_BYTES);
        let texts = [
            &mut facts.actor,
            &mut facts.user,
            &mut facts.channel,
            &mut facts.result,
            &mut facts.purpose,
        ];
        for text in texts.into_iter().flatten() {
            cut_json(text, MAX_FACT_BYTES);
        }
        self.timeline.push(Entry {
            at,
            kind,
            detail,
            facts,
        });
        let marker = usize::from(self.elided > 0);
        if self.timeline.len() <= TIMELINE_HEAD + marker + TIMELINE_TAIL {
            return;
        }
        if self.elided == 0 {
            let placeholder = self.timeline[TIMELINE_HEAD].clone();
            self.timeline.insert(TIMELINE_HEAD, placeholder);
        }
        let gone = self.timeline.remove(TIMELINE_HEAD + 1);
        self.elided += 1;
        self.timeline[TIMELINE_HEAD] = Entry {
            at: gone.at,
            kind: EntryKind::Elided,
            detail: format!("{} entries left out, the last at this time", self.elided),
            facts: Facts::default(),
        };
    }

    /// The timeline's entries with their number in the incident's whole
    /// history (0 for the first entry ever), the `elided` marker left out:
    /// entries after the head are numbered past those left out. An entry
    /// keeps its number in every later version of the incident, which is
    /// what lets the lake's `incidents` table hold each entry once.
    pub fn numbered_timeline(&self) -> impl Iterator<Item = (u64, &Entry)> {
        let elided = self.elided;
        self.timeline
            .iter()
            .enumerate()
            .filter(move |(i, _)| !(elided > 0 && *i == TIMELINE_HEAD))
            .map(move |(i, entry)| {
                let i = i as u64;
                let n = if elided > 0 && i > TIMELINE_HEAD as u64 {
                    i - 1 + elided
                } else {
                    i
                };
                (n, entry)
            })
    }
}
