//! The in-memory schedule: two heaps ordered by next-attempt time — the priority lane
//! and the bulk — and a map from message ID to its current entry. Stale heap entries
//! (a message rescheduled, held or removed) are skipped when popped, so every operation
//! is O(log n) and nothing is ever rescanned.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    next: u64,
    priority: bool,
    generation: u64,
}

#[derive(Debug, Default)]
pub struct Schedule {
    lanes: [BinaryHeap<Reverse<(u64, u64, String)>>; 2],
    current: HashMap<String, Entry>,
    generation: u64,
}

impl Schedule {
    pub fn len(&self) -> usize {
        self.current.len()
    }
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
    pub fn contains(&self, id: &str) -> bool {
        self.current.contains_key(id)
    }

    /// Schedule (or reschedule) `id` at `next`.
    pub fn insert(&mut self, id: &str, next: u64, priority: bool) {
        self.generation += 1;
        let e = Entry {
            next,
            priority,
            generation: self.generation,
        };
        self.current.insert(id.to_string(), e);
        self.lanes[usize::from(!priority)].push(Reverse((next, self.generation, id.to_string())));
    }

    /// The scheduled messages.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.current.keys()
    }

    /// When `id` is due, if it is scheduled.
    pub fn next_of(&self, id: &str) -> Option<u64> {
        self.current.get(id).map(|e| e.next)
    }

    pub fn remove(&mut self, id: &str) -> bool {
        self.current.remove(id).is_some()
    }

    /// Make `id` due now (requeue).
    pub fn advance(&mut self, id: &str, now: u64) {
        if let Some(e) = self.current.get(id).copied() {
            if e.next > now {
                self.insert(id, now, e.priority);
            }
        }
    }

    /// Make everything due now (SIGALRM). O(n), on request only.
    pub fn all_now(&mut self, now: u64) {
        let ids: Vec<(String, bool)> = self
            .current
            .iter()
            .filter(|(_, e)| e.next > now)
            .map(|(k, e)| (k.clone(), e.priority))
            .collect();
        for (id, p) in ids {
            self.insert(&id, now, p);
        }
    }

    fn clean_top(&mut self, lane: usize) {
        while let Some(Reverse((_, gen, id))) = self.lanes[lane].peek() {
            if self.current.get(id).is_some_and(|e| e.generation == *gen) {
                return;
            }
            self.lanes[lane].pop();
        }
    }

    /// The next due message at `now`, priority lane first; it leaves the schedule.
    pub fn pop_due(&mut self, now: u64) -> Option<String> {
        for lane in 0..2 {
            self.clean_top(lane);
            if let Some(Reverse((next, _, _))) = self.lanes[lane].peek() {
                if *next <= now {
                    let Reverse((_, _, id)) = self.lanes[lane].pop()?;
                    self.current.remove(&id);
                    return Some(id);
                }
            }
        }
        None
    }

    /// When the next message comes due.
    pub fn next_due(&mut self) -> Option<u64> {
        (0..2)
            .filter_map(|lane| {
                self.clean_top(lane);
                self.lanes[lane].peek().map(|Reverse((n, _, _))| *n)
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_first_then_by_time_and_stale_entries_skipped() {
        let mut s = Schedule::default();
        s.insert("bulk1", 10, false);
        s.insert("bulk2", 5, false);
        s.insert("vip", 9, true);
        s.insert("later", 100, true);
        assert_eq!(s.next_due(), Some(5));
        assert_eq!(s.pop_due(20).as_deref(), Some("vip"));
        assert_eq!(s.pop_due(20).as_deref(), Some("bulk2"));
        s.insert("bulk1", 50, false); // rescheduled: old entry is stale
        assert_eq!(s.pop_due(20), None);
        s.advance("bulk1", 20);
        assert_eq!(s.pop_due(20).as_deref(), Some("bulk1"));
        s.remove("later");
        assert_eq!(s.next_due(), None);
        assert!(s.is_empty());
        s.insert("a", 1000, false);
        s.all_now(30);
        assert_eq!(s.pop_due(30).as_deref(), Some("a"));
    }
}
