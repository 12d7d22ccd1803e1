//! What changed in a shard since it was last saved, so that a checkpoint
//! can hold only that: [`ShardChanges`] is written, read back as a
//! [`ShardPatch`] and applied to the saved state with
//! [`Shard::apply_patch`].
//!
//! A whole snapshot costs about 14 bytes per event within the dedup horizon
//! and grows with it; the changes of one flush cost 20-27 bytes per event of
//! that flush only (each article it touched is written whole), measured on
//! `generate`'s events.
//!
//! **Exactness.** The patch holds each article slot that changed, whole
//! (vacated ones as vacant), the dedup memory's and the cold index's
//! changes as the operations that made them, in order, and the small parts
//! whole (open windows, source names added, the scalars). So the saved
//! state with the patch applied holds, slot for slot and fingerprint for
//! fingerprint, what the live shard held when the patch was taken.
//!
//! A shard keeps no journal until [`Shard::mark_saved`] is first called,
//! so counting that is never checkpointed (tests, benchmarks) pays nothing
//! for it.

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use super::records::{windows_from_record, ArticleRecord, ArticleView, WindowsRecord, WindowsView};
use super::snapshot::{check_windows, rules_from_record, rules_record};
use super::Shard;
use crate::time::Micros;

/// A change to the dedup memory, in the order it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum FingerprintChange {
    /// A fingerprint (as fixed little-endian bytes: a varint of a random
    /// number would take 10) added with its generation tag.
    Insert([u8; 8], u8),
    /// A sweep dropped the generations older than this tag.
    Sweep(u8),
    /// Every fingerprint moved to this tag (the horizon changed).
    Retag(u8),
}

/// A change to the cold index (article hash → cold segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum ColdChange {
    Insert([u8; 8], u64),
    Remove([u8; 8]),
}

/// The record of changes since the last save.
#[derive(Clone, Debug, Default)]
pub(super) struct Journal {
    /// One bit per article slot, set when the slot changed.
    slot_bits: Vec<u64>,
    /// The slots whose bit is set, in the order they first changed.
    slots: Vec<u32>,
    fingerprints: Vec<FingerprintChange>,
    cold: Vec<ColdChange>,
    /// Source names held at the save: later ones are new.
    sources_saved: usize,
}

impl Journal {
    /// An empty journal, for a state holding `sources` source names.
    fn restart(&mut self, sources: usize) {
        for slot in self.slots.drain(..) {
            self.slot_bits[slot as usize / 64] = 0;
        }
        self.fingerprints.clear();
        self.cold.clear();
        self.sources_saved = sources;
    }

    pub(super) fn slot(&mut self, slot: u32) {
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        if word >= self.slot_bits.len() {
            self.slot_bits.resize(word + 1, 0);
        }
        if self.slot_bits[word] & bit == 0 {
            self.slot_bits[word] |= bit;
            self.slots.push(slot);
        }
    }

    pub(super) fn fingerprint(&mut self, change: FingerprintChange) {
        self.fingerprints.push(change);
    }

    pub(super) fn cold(&mut self, change: ColdChange) {
        self.cold.push(change);
    }
}

/// The changes of a shard since its last save, borrowed from it for
/// writing. Read back as a [`ShardPatch`].
#[derive(Serialize)]
pub struct ShardChanges<'a> {
    rules: (Micros, Micros, Micros),
    generation_width: Micros,
    max_event_time: Option<Micros>,
    swept_at: Option<Micros>,
    /// How many source names the saved state held: the new ones follow.
    sources_from: u64,
    new_sources: &'a [Box<str>],
    /// Article slots after the changes, vacant ones included.
    slot_count: u64,
    articles: ChangedSlots<'a>,
    open_windows: WindowsView<'a>,
    fingerprints: &'a [FingerprintChange],
    cold: &'a [ColdChange],
}

struct ChangedSlots<'a>(&'a Shard, &'a [u32]);

impl Serialize for ChangedSlots<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.1.len()))?;
        for slot in self.1 {
            seq.serialize_element(&(slot, ArticleView(self.0.articles.get(*slot))))?;
        }
        seq.end()
    }
}

/// Changes read back, to be applied with [`Shard::apply_patch`] to the
/// state they were taken against.
#[derive(Debug, Deserialize)]
pub struct ShardPatch {
    pub(super) rules: (Micros, Micros, Micros),
    pub(super) generation_width: Micros,
    pub(super) max_event_time: Option<Micros>,
    pub(super) swept_at: Option<Micros>,
    pub(super) sources_from: u64,
    pub(super) new_sources: Vec<Box<str>>,
    pub(super) slot_count: u64,
    pub(super) articles: Vec<(u32, ArticleRecord)>,
    pub(super) open_windows: WindowsRecord,
    pub(super) fingerprints: Vec<FingerprintChange>,
    pub(super) cold: Vec<ColdChange>,
}

/// Why a patch does not fit the state it was applied to: it was taken
/// against another one, or the file holding it is damaged.
#[derive(Debug, thiserror::Error)]
#[error("the shard's changes do not fit the saved state: {0}")]
pub struct PatchError(String);

impl Shard {
    /// Takes the state as it is now as the saved one: from here on, the
    /// shard records its changes, and [`Shard::changes`] gives those since
    /// this call.
    pub fn mark_saved(&mut self) {
        let sources = self.sources.names().len();
        self.journal
            .get_or_insert_with(Box::default)
            .restart(sources);
    }

    /// The changes since the last [`Shard::mark_saved`], or `None` if it
    /// was never called.
    pub fn changes(&self) -> Option<ShardChanges<'_>> {
        let journal = self.journal.as_deref()?;
        Some(ShardChanges {
            rules: rules_record(&self.rules),
            generation_width: self.generation_width,
            max_event_time: self.max_event_time,
            swept_at: self.swept_at,
            sources_from: journal.sources_saved as u64,
            new_sources: &self.sources.names()[journal.sources_saved..],
            slot_count: self.articles.all_slots().len() as u64,
            articles: ChangedSlots(self, &journal.slots),
            open_windows: WindowsView(&self.open_windows),
            fingerprints: &journal.fingerprints,
            cold: &journal.cold,
        })
    }

    /// Applies changes taken (by [`Shard::changes`]) from a shard that was
    /// in this state when it was saved. The patch is checked as a
    /// snapshot is; after an error the shard is half changed and must be
    /// dropped.
    pub fn apply_patch(&mut self, patch: ShardPatch) -> Result<(), PatchError> {
        let held = self.sources.names().len() as u64;
        if patch.sources_from != held {
            return Err(PatchError(format!(
                "it adds source names after {}, and the state holds {held}",
                patch.sources_from
            )));
        }
        for name in patch.new_sources {
            if !self.sources.push_new(name) {
                return Err(PatchError("it adds a source name twice".into()));
            }
        }
        self.overwrite_slots(patch.slot_count, patch.articles)
            .map_err(PatchError)?;
        let open_windows = windows_from_record(patch.open_windows).map_err(PatchError)?;
        check_windows(&open_windows, &self.articles).map_err(PatchError)?;
        for change in patch.fingerprints {
            match change {
                FingerprintChange::Insert(key, tag) => {
                    self.seen.insert(u64::from_le_bytes(key), tag);
                }
                FingerprintChange::Sweep(cutoff) => self.seen.retain(super::keeps(cutoff)),
                FingerprintChange::Retag(tag) => self.seen.retag_all(tag),
            }
        }
        for change in patch.cold {
            match change {
                ColdChange::Insert(hash, segment) => {
                    self.cold.insert(u64::from_le_bytes(hash), segment);
                }
                ColdChange::Remove(hash) => {
                    self.cold.remove(&u64::from_le_bytes(hash));
                }
            }
        }
        self.rules = rules_from_record(patch.rules);
        self.generation_width = patch.generation_width.max(1);
        self.max_event_time = patch.max_event_time;
        self.swept_at = patch.swept_at;
        self.open_windows = open_windows;
        self.changed = self
            .articles
            .iter()
            .filter(|(_, a)| a.changed)
            .map(|(slot, _)| slot)
            .collect();
        Ok(())
    }

    /// Puts a patch's article slots in place, checked, leaving
    /// `slot_count` slots.
    fn overwrite_slots(
        &mut self,
        slot_count: u64,
        records: Vec<(u32, ArticleRecord)>,
    ) -> Result<(), String> {
        let sources = self.sources.names().len();
        let held = self.articles.all_slots().len() as u64;
        if slot_count < held {
            return Err(format!(
                "it has {slot_count} article slots, fewer than the {held} held"
            ));
        }
        let mut articles = Vec::with_capacity(records.len());
        for (slot, record) in records {
            if u64::from(slot) >= slot_count {
                return Err(format!("article slot {slot} is beyond the slots it holds"));
            }
            let article = record
                .into_article(sources)
                .map_err(|e| format!("article slot {slot}: {e}"))?;
            articles.push((slot, article));
        }
        for (slot, article) in articles {
            self.articles.overwrite(slot, article);
        }
        self.articles.settle();
        let now = self.articles.all_slots().len() as u64;
        if now != slot_count {
            return Err(format!(
                "it leaves {now} article slots where it should hold {slot_count}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use std::collections::BTreeMap;

    use super::*;
    use crate::event::{Event, EventBody};
    use crate::shard::articles::Article;
    use crate::shard::{Applied, ColdArticle};
    use crate::shard::{CountingRules, ShardSnapshot};
    use crate::time::Micros;
    use crate::time::{DAY, SECOND};
    use crate::SplitMix64;

    /// Everything a shard holds, in a comparable order: slots (vacant ones
    /// included), source names, fingerprints as a sorted list, cold index,
    /// open windows, changed articles and scalars.
    #[derive(Debug, PartialEq)]
    struct Contents {
        slots: Vec<Article>,
        sources: Vec<Box<str>>,
        fingerprints: Vec<(u64, u8)>,
        cold: BTreeMap<u64, u64>,
        windows: BTreeMap<Micros, BTreeMap<u32, super::super::Delta>>,
        changed: Vec<u32>,
        scalars: (CountingRules, Micros, Option<Micros>, Option<Micros>),
    }

    fn contents(shard: &Shard) -> Contents {
        let mut fingerprints: Vec<(u64, u8)> = shard.seen.iter().collect();
        fingerprints.sort_unstable();
        let mut changed = shard.changed.clone();
        changed.sort_unstable();
        Contents {
            slots: shard.articles.all_slots().map(|(_, a)| a.clone()).collect(),
            sources: shard.sources.names().to_vec(),
            fingerprints,
            cold: shard.cold.iter().map(|(h, s)| (*h, *s)).collect(),
            windows: shard
                .open_windows
                .iter()
                .map(|(start, d)| (*start, d.iter().map(|(s, d)| (*s, *d)).collect()))
                .collect(),
            changed,
            scalars: (
                shard.rules,
                shard.generation_width,
                shard.max_event_time,
                shard.swept_at,
            ),
        }
    }

    /// Holds `restored` to `live` part by part, for a readable failure.
    fn assert_same(restored: &Shard, live: &Shard, when: &str) {
        let (r, l) = (contents(restored), contents(live));
        assert_eq!(r.scalars, l.scalars, "{when}: scalars");
        assert_eq!(r.sources, l.sources, "{when}: source names");
        assert_eq!(r.slots.len(), l.slots.len(), "{when}: article slots");
        for (slot, (r, l)) in r.slots.iter().zip(&l.slots).enumerate() {
            assert_eq!(r, l, "{when}: article slot {slot}");
        }
        assert!(
            r.fingerprints == l.fingerprints,
            "{when}: dedup memory differs"
        );
        assert_eq!(r.cold, l.cold, "{when}: cold index");
        assert_eq!(r.windows, l.windows, "{when}: open windows");
        assert_eq!(r.changed, l.changed, "{when}: changed articles");
    }

    fn event(rng: &mut SplitMix64, n: u64, clock: Micros) -> Event<'static> {
        let body = match rng.below(3) {
            0 => EventBody::SourceConfirmed {
                source_id: format!("Source-{}", rng.below(40)).into(),
                source_url: None,
            },
            1 => EventBody::ArticlePublished {
                title: format!("Title {n}").into(),
                url: "https://x".into(),
                section: None,
                language: None,
                author: None,
            },
            _ => EventBody::SocialComment {
                platform: "x".into(),
                author_id: None,
            },
        };
        let newest = (clock / (3600 * SECOND)) as u64;
        // Mostly the last 60 hours' articles; now and then an old one,
        // which comes back from a cold segment.
        let hours_back = if rng.below(20) == 0 { 300 } else { 60 };
        // Some ids repeat: redeliveries within and beyond the horizon.
        let id = if rng.below(8) == 0 {
            n.saturating_sub(1000 * (1 + rng.below(4)))
        } else {
            n
        };
        Event {
            event_id: format!("e-{id}").into(),
            article_id: format!("a-{}", newest - rng.below(hours_back)).into(),
            occurred_at: clock - rng.below(600) as i64 * SECOND,
            body,
        }
    }

    /// Saves a shard as snapshots and patches in its persisted records
    /// (postcard, as checkpoints hold them), restores from them after every flush, and holds the
    /// restored shard to the live one field by field: dedup memory swept
    /// and re-tagged, articles evicted and rehydrated, slots reused.
    #[test]
    fn a_snapshot_and_its_patches_restore_the_live_state_exactly() {
        let rules = CountingRules {
            window_size: 3600 * SECOND,
            dedup_horizon: DAY / 4,
            max_out_of_orderness: 60 * SECOND,
        };
        let mut rng = SplitMix64::new(11);
        let mut live = Shard::new(rules);
        live.mark_saved();
        let mut snapshot = postcard::to_stdvec(&live.snapshot()).unwrap();
        let mut patches: Vec<Vec<u8>> = Vec::new();
        let mut segments: HashMap<u64, HashMap<String, ColdArticle>> = HashMap::new();
        let mut clock: Micros = 1_800_000_000 * SECOND;
        let (mut sweeps, mut evicted, mut rehydrated) = (0, 0, 0);
        for flush in 1..=120u64 {
            for n in flush * 1000..flush * 1000 + 300 {
                clock += rng.below(40) as i64 * SECOND;
                let event = event(&mut rng, n, clock);
                if let Applied::Cold { segment } = live.apply(&event) {
                    let cold = segments[&segment][&*event.article_id].clone();
                    live.rehydrate(event.article_id.to_string(), cold);
                    rehydrated += 1;
                    live.apply(&event);
                }
            }
            if flush == 60 {
                // A horizon change between runs re-tags the dedup memory.
                live.set_rules(CountingRules {
                    dedup_horizon: DAY / 3,
                    ..rules
                });
            }
            let swept_at = live.swept_at;
            let drained = live.drain(clock, flush % 10 == 0, flush);
            sweeps += usize::from(live.swept_at != swept_at);
            evicted += drained.evicted.len();
            segments.entry(flush).or_default().extend(drained.evicted);
            if flush % 9 == 0 {
                snapshot = postcard::to_stdvec(&live.snapshot()).unwrap();
                patches.clear();
            } else {
                patches.push(postcard::to_stdvec(&live.changes().unwrap()).unwrap());
            }
            live.mark_saved();

            let mut restored =
                Shard::try_from(postcard::from_bytes::<ShardSnapshot>(&snapshot).unwrap()).unwrap();
            for patch in &patches {
                restored
                    .apply_patch(postcard::from_bytes(patch).unwrap())
                    .unwrap();
            }
            assert_same(&restored, &live, &format!("after flush {flush}"));
            if flush % 13 == 0 {
                // As after a restart: counting goes on from the restored
                // state, whose vacant slots may be reused in another order.
                restored.mark_saved();
                live = restored;
            }
        }
        assert!(
            sweeps > 20 && evicted > 100 && rehydrated > 10,
            "{sweeps} {evicted} {rehydrated}"
        );
    }

    #[test]
    fn a_patch_for_another_state_is_refused() {
        let rules = CountingRules {
            window_size: 3600 * SECOND,
            dedup_horizon: DAY,
            max_out_of_orderness: 60 * SECOND,
        };
        let mut rng = SplitMix64::new(5);
        let mut live = Shard::new(rules);
        live.mark_saved();
        for n in 0..50 {
            live.apply(&event(&mut rng, n + 1000, 1_800_000_000 * SECOND));
        }
        let patch = postcard::to_stdvec(&live.changes().unwrap()).unwrap();
        // The patch adds source names to an empty state: applied to a state
        // that already holds them, it does not fit.
        let mut other = live.clone();
        let error = other
            .apply_patch(postcard::from_bytes(&patch).unwrap())
            .unwrap_err();
        assert!(error.to_string().contains("source names"), "{error}");
        let mut empty = Shard::new(rules);
        empty
            .apply_patch(postcard::from_bytes(&patch).unwrap())
            .unwrap();
        assert_same(&empty, &live, "an empty state patched");
    }
}
