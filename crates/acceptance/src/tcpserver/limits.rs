//! Connection slots: at most `limit` connections at once (the accept loop waits for a
//! free slot before accepting, so extra clients wait in the kernel's backlog), and at
//! most `per_ip` from one address (over it, the connection is refused). A [`Slot`] is
//! held from accept until the connection's child has been reaped; dropping it frees it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
pub struct Limits {
    limit: usize,
    per_ip: usize,
    counts: Mutex<Counts>,
    freed: Condvar,
}

/// One connection's share of the limits.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    /// `per_ip` 0 = no per-address limit.
    pub fn new(limit: usize, per_ip: usize) -> Arc<Limits> {
        Arc::new(Limits {
            limit,
            per_ip,
            counts: Mutex::new(Counts::default()),
            freed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // A panicking connection thread cannot leave the counts inconsistent (each
        // update is one statement), so a poisoned lock is still usable.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.lock().total
    }

    /// Block until fewer than `limit` connections are open.
    pub fn wait_for_room(&self) {
        let mut c = self.lock();
        while c.total >= self.limit {
            c = self.freed.wait(c).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Take a slot for a connection from `ip`, or `None` when `ip` already has
    /// `per_ip` connections. Returns the slot and the new total.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<(Slot, usize)> {
        let mut c = self.lock();
        let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
        if self.per_ip > 0 && mine >= self.per_ip {
            return None;
        }
        c.per_ip.insert(ip, mine + 1);
        c.total += 1;
        Some((
            Slot {
                limits: Arc::clone(self),
                ip,
            },
            c.total,
        ))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.limits.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
        drop(c);
        self.limits.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_ip_and_total() {
        let l = Limits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let (s1, n1) = l.take(a).unwrap();
        let (_s2, n2) = l.take(a).unwrap();
        assert_eq!((n1, n2), (1, 2));
        assert!(l.take(a).is_none());
        let (_s3, n3) = l.take(b).unwrap();
        assert_eq!(n3, 3);
        drop(s1);
        assert_eq!(l.active(), 2);
        assert!(l.take(a).is_some());
    }

    #[test]
    fn waiting_ends_when_a_slot_frees() {
        let l = Limits::new(1, 0);
        let (slot, _) = l.take("::1".parse().unwrap()).unwrap();
        let l2 = Arc::clone(&l);
        let t = std::thread::spawn(move || l2.wait_for_room());
        drop(slot);
        t.join().unwrap();
        assert_eq!(l.active(), 0);
    }
}
