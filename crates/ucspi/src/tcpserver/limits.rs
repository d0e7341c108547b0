//! Connection slots, kept by the accept loop alone (no locks): at most `limit`
//! connections at once (the loop stops accepting while full, so extra clients wait in
//! the kernel's backlog), and at most `per_ip` from one address (over it, the
//! connection is refused). A slot is taken at accept; it is freed when the connection
//! ends without a program (denied, dropped, failed), or — once the program runs — when
//! the accept loop has reaped the program's process.
//!
//! A connection thread reports its program's pid after starting it, and the loop may
//! reap that pid first (a program that ends at once). Such a pid is kept in `early`
//! until its report arrives, so no lock has to cover the start of a program.

use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug)]
pub struct Limits {
    limit: usize,
    per_ip: usize,
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    /// Programs running, by pid: each holds the slot of its client's address.
    running: HashMap<u32, IpAddr>,
    /// Programs reaped before their start was reported, with how they ended.
    early: HashMap<u32, Ended>,
}

/// How a program ended, for the `end` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exit(i32),
    Signal(i32),
    Unknown,
}

/// Most reaped pids kept waiting for a report. Only our own programs are children, and
/// each is reported right after it starts, so this bounds a leak that cannot happen.
const MAX_EARLY: usize = 4096;

impl Limits {
    /// `per_ip` 0 = no per-address limit.
    pub fn new(limit: usize, per_ip: usize) -> Limits {
        Limits {
            limit,
            per_ip,
            total: 0,
            by_ip: HashMap::new(),
            running: HashMap::new(),
            early: HashMap::new(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.total
    }

    /// Whether `limit` connections are open (stop accepting).
    pub fn full(&self) -> bool {
        self.total >= self.limit
    }

    /// Take a slot for a connection from `ip`, or `None` when `ip` already has
    /// `per_ip` connections. Returns the new total.
    pub fn take(&mut self, ip: IpAddr) -> Option<usize> {
        let mine = self.by_ip.get(&ip).copied().unwrap_or(0);
        if self.per_ip > 0 && mine >= self.per_ip {
            return None;
        }
        self.by_ip.insert(ip, mine + 1);
        self.total += 1;
        Some(self.total)
    }

    /// Free a slot of `ip` (its connection ended without a program).
    pub fn release(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// The slot of `ip` now belongs to the program running as `pid`. If the loop has
    /// reaped `pid` already, the slot is freed now and the answer says how it ended.
    pub fn started(&mut self, pid: u32, ip: IpAddr) -> Option<Ended> {
        match self.early.remove(&pid) {
            Some(ended) => {
                self.release(ip);
                Some(ended)
            }
            None => {
                self.running.insert(pid, ip);
                None
            }
        }
    }

    /// `pid` has been reaped: free its slot (true). False if its start has not been
    /// reported yet: it is kept until [`Limits::started`] hears of it.
    pub fn reaped(&mut self, pid: u32, ended: Ended) -> bool {
        match self.running.remove(&pid) {
            Some(ip) => {
                self.release(ip);
                true
            }
            None => {
                if self.early.len() >= MAX_EARLY {
                    self.early.clear();
                }
                self.early.insert(pid, ended);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_ip_and_total() {
        let mut l = Limits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!((l.take(a), l.take(a)), (Some(1), Some(2)));
        assert!(l.take(a).is_none());
        assert_eq!(l.take(b), Some(3));
        assert!(l.full());
        l.release(a);
        assert_eq!(l.active(), 2);
        assert!(!l.full());
        assert!(l.take(a).is_some());
    }

    #[test]
    fn a_running_program_holds_its_slot_until_reaped() {
        let mut l = Limits::new(1, 1);
        let a: IpAddr = "::1".parse().unwrap();
        l.take(a).unwrap();
        assert_eq!(l.started(4242, a), None);
        assert!(l.full() && l.take(a).is_none());
        assert!(!l.reaped(4243, Ended::Exit(0)), "not reported");
        assert!(l.full());
        assert!(l.reaped(4242, Ended::Exit(0)));
        assert_eq!(l.active(), 0);
        assert!(!l.reaped(4242, Ended::Exit(0)), "only once");
        assert_eq!(l.active(), 0);
    }

    #[test]
    fn a_program_reaped_before_its_report_frees_its_slot_at_the_report() {
        let mut l = Limits::new(2, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        l.take(a).unwrap();
        assert!(!l.reaped(77, Ended::Signal(9)));
        assert_eq!(l.active(), 1, "the slot is held until the report");
        assert_eq!(l.started(77, a), Some(Ended::Signal(9)));
        assert_eq!(l.active(), 0);
        assert!(!l.reaped(77, Ended::Exit(0)), "forgotten once reported");
    }
}
