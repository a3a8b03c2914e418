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

use std::collections::{HashMap, HashSet};

use super::hours::SeriesHour;
use super::HOUR_NS;

/// `(measurement id, hour start ns, series id)`.
pub(super) type HourKey = (i64, i64, i64);

/// Pending summaries past which a batch writes them out even without a read.
const MAX_PENDING: usize = 200_000;

#[derive(Default)]
pub(super) struct HourCache {
    entries: HashMap<HourKey, Cached>,
    /// `(measurement id, hour)` listed in `hours_pending` by this connection.
    pending: HashSet<(i64, i64)>,
    dirty: usize,
    /// Per measurement, the latest hour a batch wrote into.
    newest_hour: HashMap<i64, i64>,
}

struct Cached {
    summary: SeriesHour,
    dirty: bool,
}

impl HourCache {
    pub fn get(&self, key: &HourKey) -> Option<&SeriesHour> {
        self.entries.get(key).map(|c| &c.summary)
    }

    /// Whether this connection has already listed the hour as pending.
    pub fn is_pending(&self, measurement_id: i64, hour_ns: i64) -> bool {
        self.pending.contains(&(measurement_id, hour_ns))
    }

    pub fn any_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.dirty >= MAX_PENDING
    }

    /// Takes the summaries of a committed batch (whose hours it listed as
    /// pending). True when it wrote into a measurement's hour later than any
    /// before: the earlier hours are then unlikely to change and worth writing out.
    pub fn absorb(&mut self, touched: HashMap<HourKey, SeriesHour>) -> bool {
        let mut moved_on = false;
        for ((m, hour, sid), summary) in touched {
            self.pending.insert((m, hour));
            let newest = self.newest_hour.entry(m).or_insert(hour);
            if hour > *newest {
                *newest = hour;
                moved_on = true;
            }
            let was_dirty = self.entries.insert((m, hour, sid), Cached { summary, dirty: true }).is_some_and(|c| c.dirty);
            if !was_dirty {
                self.dirty += 1;
            }
        }
        moved_on
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
        let newest = &self.newest_hour;
        self.entries.retain(|(m, hour, _), c| {
            c.dirty = false;
            newest.get(m).is_some_and(|n| *hour >= n - HOUR_NS)
        });
    }

    /// Forgets everything: another connection changed the file, so what is here
    /// may be stale (the caller rebuilds the pending hours from their points).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.pending.clear();
        self.dirty = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_mark_hours_pending_and_a_flush_keeps_only_recent_hours() {
        let mut c = HourCache::default();
        let h = |n: i64| n * HOUR_NS;
        let batch = |keys: &[HourKey]| keys.iter().map(|k| (*k, SeriesHour::default())).collect();
        assert!(!c.absorb(batch(&[(1, h(5), 10), (1, h(5), 11)])));
        assert!(c.is_pending(1, h(5)) && !c.is_pending(1, h(6)));
        // The same summaries again are not counted twice.
        assert!(!c.absorb(batch(&[(1, h(5), 10)])));
        assert_eq!(c.dirty().count(), 2);
        assert_eq!(c.dirty, 2);
        // A later hour: time to write out.
        assert!(c.absorb(batch(&[(1, h(7), 10), (2, h(1), 10)])));
        c.flushed();
        assert!(!c.any_pending());
        assert_eq!(c.dirty().count(), 0);
        // Hour 5 is more than an hour before measurement 1's newest (7): dropped.
        assert!(c.get(&(1, h(5), 10)).is_none());
        assert!(c.get(&(1, h(7), 10)).is_some());
        assert!(c.get(&(2, h(1), 10)).is_some());
        c.clear();
        assert!(c.get(&(1, h(7), 10)).is_none());
    }
}
