//! The hour summaries an embedded store holds in memory between batches.
//!
//! Collectors write every series' newest point every few seconds, so consecutive
//! batches land in the same hours of the same series. Reading each touched summary
//! back from `series_hours` and rewriting it in every batch cost more than writing
//! the points themselves (72 k points/s against 659 k without summaries). So a
//! batch updates the summaries here, and they reach the file in one go when
//! someone needs them there: before a read that uses them, when a measurement's
//! writes move on to a new hour, when many are waiting, and on close. The hours
//! whose summaries are only here are listed in `hours_pending` on disk, in the
//! same transaction as their points, so a crash loses nothing: the next open
//! rebuilds those hours from their points.
//!
//! Summaries of recent hours stay here after they are written (clean), so the next
//! batch need not read them back; older ones are dropped then, which bounds the
//! cache to about two hours of series.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use super::hours::SeriesHour;
use super::HOUR_NS;

/// `(measurement id, hour start ns, series id)`.
pub(super) type HourKey = (i64, i64, i64);

/// Pending summaries past which a batch writes them out even without a read.
const MAX_PENDING: usize = 200_000;

/// Batches look up every point's summary here: a fast hash, not SipHash (the
/// keys are the store's own ids, not input an attacker chooses).
type Fast = foldhash::fast::RandomState;

/// A batch changes summaries here in place, before it commits. When it fails the
/// caller [`clear`](HourCache::clear)s the cache and rebuilds the listed hours from
/// the points on disk, so a rolled-back batch leaves nothing behind.
#[derive(Default)]
pub(super) struct HourCache {
    entries: HashMap<HourKey, Cached, Fast>,
    /// `(measurement id, hour)` listed in `hours_pending` by this connection.
    pending: HashSet<(i64, i64), Fast>,
    dirty: usize,
    /// Per measurement, the latest hour a batch wrote into.
    newest_hour: HashMap<i64, i64, Fast>,
    /// A batch wrote into a measurement's hour later than any before: the earlier
    /// hours are then unlikely to change and worth writing out.
    moved_on: bool,
}

struct Cached {
    summary: SeriesHour,
    dirty: bool,
}

impl HourCache {
    /// The summary a point at `key` changes, marked for writing out: the cached
    /// one, or `load`ed from the file.
    pub fn summary_mut<E>(
        &mut self,
        key: HourKey,
        load: impl FnOnce() -> Result<SeriesHour, E>,
    ) -> Result<&mut SeriesHour, E> {
        let cached = match self.entries.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Cached { summary: load()?, dirty: false }),
        };
        if !cached.dirty {
            cached.dirty = true;
            self.dirty += 1;
            let newest = self.newest_hour.entry(key.0).or_insert(key.1);
            if key.1 > *newest {
                *newest = key.1;
                self.moved_on = true;
            }
        }
        Ok(&mut cached.summary)
    }

    /// True the first time an hour is seen since the last flush: the caller lists
    /// it in `hours_pending`, in the batch's transaction.
    pub fn list(&mut self, measurement_id: i64, hour_ns: i64) -> bool {
        self.pending.insert((measurement_id, hour_ns))
    }

    pub fn any_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the summaries should be written out now rather than at the next read.
    pub fn should_flush(&self) -> bool {
        self.moved_on || self.dirty >= MAX_PENDING
    }

    /// The summaries to write out.
    pub fn dirty(&self) -> impl Iterator<Item = (&HourKey, &SeriesHour)> {
        self.entries.iter().filter(|(_, c)| c.dirty).map(|(k, c)| (k, &c.summary))
    }

    pub fn pending(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.pending.iter().copied()
    }

    /// After the dirty summaries were written and the pending hours unlisted:
    /// all are clean, and those of hours before each measurement's previous hour
    /// are dropped.
    pub fn flushed(&mut self) {
        self.pending.clear();
        self.dirty = 0;
        self.moved_on = false;
        let newest = &self.newest_hour;
        self.entries.retain(|(m, hour, _), c| {
            c.dirty = false;
            newest.get(m).is_some_and(|n| *hour >= n - HOUR_NS)
        });
    }

    /// Forgets everything: a batch failed part way, or another connection changed
    /// the file, so what is here may be wrong (the caller rebuilds the listed
    /// hours from their points).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.pending.clear();
        self.dirty = 0;
        self.moved_on = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_mark_hours_pending_and_a_flush_keeps_only_recent_hours() {
        let mut c = HourCache::default();
        let h = |n: i64| n * HOUR_NS;
        let touch = |c: &mut HourCache, key: HourKey| {
            c.summary_mut(key, || Ok::<_, ()>(SeriesHour::default())).unwrap().add_point(key.1, std::iter::empty());
        };
        touch(&mut c, (1, h(5), 10));
        touch(&mut c, (1, h(5), 11));
        assert!(c.list(1, h(5)) && !c.list(1, h(5)));
        // The same summary again is not counted twice.
        touch(&mut c, (1, h(5), 10));
        assert_eq!(c.dirty().count(), 2);
        assert!(!c.should_flush());
        // A later hour: time to write out.
        touch(&mut c, (1, h(7), 10));
        touch(&mut c, (2, h(1), 10));
        assert!(c.should_flush());
        c.flushed();
        assert!(!c.any_pending() && !c.should_flush());
        assert_eq!(c.dirty().count(), 0);
        // Hour 5 is more than an hour before measurement 1's newest (7): dropped,
        // so the next point there loads it.
        let mut loaded = false;
        c.summary_mut((1, h(5), 10), || {
            loaded = true;
            Ok::<_, ()>(SeriesHour::default())
        })
        .unwrap();
        assert!(loaded);
        assert!(c.entries.contains_key(&(1, h(7), 10)) && c.entries.contains_key(&(2, h(1), 10)));
        c.clear();
        assert!(c.entries.is_empty() && c.dirty().count() == 0);
    }
}
