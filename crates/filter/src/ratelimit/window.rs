//! Sliding-window counters with bounded memory.
//!
//! A window of `W` seconds is cut into [`SLOTS`] slots of `ceil(W / SLOTS)` seconds; a
//! key keeps only the slots it used, so a sender seen once costs one slot. The count for
//! a key is the sum of the slots that overlap the last `W` seconds, exact to within one
//! slot. At most `cap` keys are tracked: past it, keys whose window is empty go first,
//! then the least recently seen (an eighth of the table at a time, so eviction is rare).
//!
//! Each key also remembers when each alert level last fired, so that the policy sends
//! one alert per key per window.

use std::collections::{HashMap, VecDeque};

/// Slots per window.
pub const SLOTS: u64 = 60;

/// How many alert levels a key remembers (warn, block, paranoid, hold).
pub const LEVELS: usize = 4;

/// The counts of one key inside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub msgs: u64,
    pub rcpts: u64,
}

/// One key as kept across a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub key: String,
    pub last: u64,
    /// (slot number, messages, recipients).
    pub slots: Vec<(u64, u32, u32)>,
    pub fired: [Option<u64>; LEVELS],
}

#[derive(Debug, Clone, Default)]
struct Entry {
    /// (slot number, messages, recipients), oldest first, at most `SLOTS + 1` long.
    slots: VecDeque<(u64, u32, u32)>,
    /// Last time (unix seconds) anything was added.
    last: u64,
    /// When each level last fired for this key.
    fired: [Option<u64>; LEVELS],
}

/// Counters for one kind of key (senders, IPs or users).
#[derive(Debug, Clone)]
pub struct Windows {
    window: u64,
    width: u64,
    cap: usize,
    latest: u64,
    map: HashMap<String, Entry>,
}

impl Windows {
    /// Counters over `window` seconds, tracking at most `cap` keys.
    pub fn new(window: u64, cap: usize) -> Windows {
        let window = window.max(1);
        Windows {
            window,
            width: window.div_ceil(SLOTS).max(1),
            cap: cap.max(1),
            latest: 0,
            map: HashMap::new(),
        }
    }

    pub fn window(&self) -> u64 {
        self.window
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The first slot still inside the window that ends at slot `now_slot`.
    fn first_slot(&self, now_slot: u64) -> u64 {
        (now_slot + 1).saturating_sub(self.window.div_ceil(self.width))
    }

    /// Count `msgs` messages with `rcpts` recipients for `key` at time `t` (unix seconds)
    /// and return the key's counts over the window ending at `t`. An event older than the
    /// window is not counted.
    pub fn add(&mut self, key: &str, t: u64, msgs: u32, rcpts: u32) -> Counts {
        self.latest = self.latest.max(t);
        if !self.map.contains_key(key) && self.map.len() >= self.cap {
            self.evict();
        }
        let now_slot = self.latest / self.width;
        let first = self.first_slot(now_slot);
        let slot = t / self.width;
        let entry = self.map.entry(key.to_string()).or_default();
        entry.last = entry.last.max(t);
        while entry.slots.front().is_some_and(|s| s.0 < first) {
            entry.slots.pop_front();
        }
        if slot >= first {
            match entry.slots.iter_mut().find(|s| s.0 == slot) {
                Some(s) => {
                    s.1 = s.1.saturating_add(msgs);
                    s.2 = s.2.saturating_add(rcpts);
                }
                None => {
                    let at = entry.slots.partition_point(|s| s.0 < slot);
                    entry.slots.insert(at, (slot, msgs, rcpts));
                }
            }
        }
        sum(entry)
    }

    /// The key's counts over the window ending at the latest time seen.
    pub fn counts(&self, key: &str) -> Counts {
        let first = self.first_slot(self.latest / self.width);
        match self.map.get(key) {
            None => Counts::default(),
            Some(e) => {
                let mut c = Counts::default();
                for s in e.slots.iter().filter(|s| s.0 >= first) {
                    c.msgs += u64::from(s.1);
                    c.rcpts += u64::from(s.2);
                }
                c
            }
        }
    }

    /// Whether `level` may fire for `key` at `t`: it never fired, or last fired a whole
    /// window ago. Marks it fired when it may.
    pub fn fire(&mut self, key: &str, level: usize, t: u64) -> bool {
        let window = self.window;
        let Some(entry) = self.map.get_mut(key) else {
            return false;
        };
        let Some(mark) = entry.fired.get_mut(level) else {
            return false;
        };
        match *mark {
            Some(at) if t < at.saturating_add(window) => false,
            _ => {
                *mark = Some(t);
                true
            }
        }
    }

    /// Forget that `level` fired for `key` (after a block expired, so it can block again).
    pub fn reset_level(&mut self, key: &str, level: usize) {
        if let Some(mark) = self.map.get_mut(key).and_then(|e| e.fired.get_mut(level)) {
            *mark = None;
        }
    }

    /// The keys still counting or marked, to keep across a restart.
    pub fn save(&self) -> Vec<Saved> {
        let first = self.first_slot(self.latest / self.width);
        let mut out: Vec<Saved> = self
            .map
            .iter()
            .filter(|(_, e)| {
                e.slots.back().is_some_and(|s| s.0 >= first)
                    || e.fired
                        .iter()
                        .flatten()
                        .any(|&at| self.latest < at.saturating_add(self.window))
            })
            .map(|(k, e)| Saved {
                key: k.clone(),
                last: e.last,
                slots: e.slots.iter().copied().filter(|s| s.0 >= first).collect(),
                fired: e.fired,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Put back a key saved by [`Windows::save`] with the same window.
    pub fn restore(&mut self, saved: Saved) {
        if !self.map.contains_key(&saved.key) && self.map.len() >= self.cap {
            return;
        }
        let mut slots: Vec<(u64, u32, u32)> = saved.slots;
        slots.sort_unstable();
        slots.dedup_by_key(|s| s.0);
        let keep = self.window.div_ceil(self.width) as usize + 1;
        let skip = slots.len().saturating_sub(keep);
        self.latest = self.latest.max(saved.last);
        self.map.insert(
            saved.key,
            Entry {
                slots: slots.into_iter().skip(skip).collect(),
                last: saved.last,
                fired: saved.fired,
            },
        );
    }

    /// Make room for one more key.
    fn evict(&mut self) {
        let first = self.first_slot(self.latest / self.width);
        let window = self.window;
        let latest = self.latest;
        self.map.retain(|_, e| {
            let counting = e.slots.back().is_some_and(|s| s.0 >= first);
            let marked = e
                .fired
                .iter()
                .flatten()
                .any(|&at| latest < at.saturating_add(window));
            counting || marked
        });
        if self.map.len() < self.cap {
            return;
        }
        let mut ages: Vec<(u64, String)> =
            self.map.iter().map(|(k, e)| (e.last, k.clone())).collect();
        ages.sort_unstable();
        let drop = (self.cap / 8).max(1).min(ages.len());
        for (_, key) in ages.into_iter().take(drop) {
            self.map.remove(&key);
        }
    }
}

fn sum(entry: &Entry) -> Counts {
    let mut c = Counts::default();
    for s in &entry.slots {
        c.msgs += u64::from(s.1);
        c.rcpts += u64::from(s.2);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_inside_the_window_and_forgets_outside() {
        let mut w = Windows::new(600, 100);
        let t0 = 1_000_000;
        for i in 0..5 {
            assert_eq!(w.add("a@b.test", t0 + i, 1, 3).msgs, i + 1);
        }
        assert_eq!(w.counts("a@b.test"), Counts { msgs: 5, rcpts: 15 });
        // Half a window later the old slots still count.
        assert_eq!(w.add("a@b.test", t0 + 300, 1, 1).msgs, 6);
        // A window and a slot after the first burst, only the later message counts.
        assert_eq!(w.add("a@b.test", t0 + 600 + 10, 1, 1).msgs, 2);
        assert_eq!(w.add("a@b.test", t0 + 2000, 1, 1).msgs, 1);
    }

    #[test]
    fn keys_are_independent_and_old_events_do_not_count() {
        let mut w = Windows::new(60, 100);
        w.add("x", 10_000, 1, 1);
        w.add("y", 10_000, 1, 1);
        assert_eq!(w.add("x", 10_001, 1, 1).msgs, 2);
        assert_eq!(w.counts("y").msgs, 1);
        // An event a whole window in the past is not counted.
        assert_eq!(w.add("x", 9_000, 1, 1).msgs, 2);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_go_first() {
        let mut w = Windows::new(3600, 80);
        for i in 0..1000u64 {
            w.add(&format!("k{i}"), 50_000 + i, 1, 1);
            assert!(w.len() <= 80);
        }
        assert_eq!(w.counts("k999").msgs, 1);
        assert_eq!(w.counts("k0").msgs, 0, "evicted");
    }

    #[test]
    fn expired_keys_are_evicted_before_live_ones() {
        let mut w = Windows::new(60, 3);
        w.add("old", 1_000, 1, 1);
        w.add("live1", 5_000, 1, 1);
        w.add("live2", 5_000, 1, 1);
        w.add("new", 5_001, 1, 1);
        assert_eq!(w.counts("live1").msgs, 1);
        assert_eq!(w.counts("live2").msgs, 1);
        assert_eq!(w.counts("old").msgs, 0);
    }

    #[test]
    fn a_level_fires_once_per_window() {
        let mut w = Windows::new(100, 10);
        w.add("k", 1_000, 1, 1);
        assert!(w.fire("k", 0, 1_000));
        assert!(!w.fire("k", 0, 1_050));
        assert!(w.fire("k", 1, 1_050), "levels are separate");
        assert!(w.fire("k", 0, 1_100));
        w.reset_level("k", 1);
        assert!(w.fire("k", 1, 1_101));
        assert!(!w.fire("unknown", 0, 1_000));
    }

    #[test]
    fn save_and_restore_keep_counts_and_marks() {
        let mut w = Windows::new(600, 10);
        w.add("a", 10_000, 2, 5);
        w.add("a", 10_100, 1, 1);
        w.add("old", 1_000, 1, 1);
        assert!(w.fire("a", 1, 10_100));
        let saved = w.save();
        assert_eq!(saved.len(), 1, "nothing left of old: {saved:?}");
        let mut back = Windows::new(600, 10);
        for s in saved {
            back.restore(s);
        }
        assert_eq!(back.add("a", 10_200, 1, 1).msgs, 4);
        assert!(!back.fire("a", 1, 10_200), "still marked");
    }

    #[test]
    fn counters_saturate() {
        let mut w = Windows::new(60, 10);
        w.add("k", 100, u32::MAX, u32::MAX);
        let c = w.add("k", 100, 5, 5);
        assert_eq!(c.msgs, u64::from(u32::MAX));
    }
}
