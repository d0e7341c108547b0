//! How long smtpd waits for a client, and how slow a client may be (issue 16, the
//! slowloris): three limits, kept here as plain bookkeeping over times the caller
//! gives, so they are tested without a clock.
//!
//! - **Idle** (`timeoutsmtpd`): one read may wait this long for a byte, as before.
//! - **Session** (`timeoutsession`): the whole session ends this long after it began,
//!   whatever the client does; checked whenever smtpd waits for the client.
//! - **Rate** (`minrate` bytes per second over `minratewindow` seconds): a credit of
//!   `window` seconds, full at the start. Every second spent waiting for the client
//!   while it owes us bytes — inside a command or AUTH line (after its first byte), or
//!   anywhere in a DATA transfer — uses one second of it; every byte received gives
//!   back `1/minrate` seconds, up to the full window. At zero the client is too slow.
//!   A client at or above `minrate` never loses credit; one at half the rate is cut
//!   after two windows; one that stops in the middle of a line, after one window.
//!   Waiting for the first byte of a command is not counted (a client between two
//!   messages owes nothing: the idle and session limits bound that), nor is the time
//!   smtpd itself spends (the queue, checkpassword, pauses).
//!
//! [`crate::line::LineReader`] asks [`Pace::next_wait`] before each read and tells
//! [`Pace::account`] what it got.

use std::time::Duration;

/// Which limit ends a wait that brings nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `timeoutsmtpd`: `451 4.4.2 timeout`.
    Idle,
    /// `timeoutsession`: `421 4.4.2 session time limit`.
    Session,
    /// `minrate`: `421 4.4.2 too slow`.
    Slow,
}

/// The limits of one session, in the caller's clock.
#[derive(Debug, Clone)]
pub struct Pace {
    idle: Duration,
    /// When the session ends (clock time); `None`: no session limit.
    deadline: Option<Duration>,
    /// Bytes per second; 0: no rate limit.
    min_rate: u64,
    window: Duration,
    credit: Duration,
}

impl Pace {
    /// No limit at all (in-memory input in tests, where no time passes).
    pub fn unlimited() -> Pace {
        Pace {
            idle: Duration::MAX,
            deadline: None,
            min_rate: 0,
            window: Duration::ZERO,
            credit: Duration::ZERO,
        }
    }

    /// A session that starts at `now`: `idle` per read, `session` in all (`None`: no
    /// limit), at least `min_rate` bytes per second (0: no minimum) with a credit of
    /// `window`.
    pub fn new(
        now: Duration,
        idle: Duration,
        session: Option<Duration>,
        min_rate: u64,
        window: Duration,
    ) -> Pace {
        Pace {
            idle,
            deadline: session.map(|s| now.saturating_add(s)),
            min_rate,
            window,
            credit: window,
        }
    }

    /// How long the next read may wait at `now`, and which limit ends it if nothing
    /// comes. `metered`: the client owes us bytes (inside a line, or in DATA). A zero
    /// wait means the limit is already reached.
    pub fn next_wait(&self, now: Duration, metered: bool) -> (Duration, Limit) {
        let mut wait = (self.idle, Limit::Idle);
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_sub(now);
            if left <= wait.0 {
                wait = (left, Limit::Session);
            }
        }
        if metered && self.min_rate > 0 && self.credit < wait.0 {
            wait = (self.credit, Limit::Slow);
        }
        wait
    }

    /// A read waited `waited` and brought `bytes`.
    pub fn account(&mut self, waited: Duration, bytes: usize, metered: bool) {
        if self.min_rate == 0 {
            return;
        }
        if metered {
            self.credit = self.credit.saturating_sub(waited);
        }
        let nanos = (bytes as u128).saturating_mul(1_000_000_000) / u128::from(self.min_rate);
        let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.credit = self.credit.saturating_add(earned).min(self.window);
    }

    /// The rate credit left (for tests and logs).
    pub fn credit(&self) -> Duration {
        self.credit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn pace(session: Option<u64>, rate: u64, window: u64) -> Pace {
        Pace::new(S(100), S(300), session.map(S), rate, S(window))
    }

    #[test]
    fn the_nearest_limit_bounds_the_wait() {
        let p = pace(Some(1800), 100, 30);
        assert_eq!(p.next_wait(S(100), false), (S(300), Limit::Idle));
        assert_eq!(p.next_wait(S(100), true), (S(30), Limit::Slow));
        assert_eq!(p.next_wait(S(1700), false), (S(200), Limit::Session));
        assert_eq!(p.next_wait(S(1890), true), (S(10), Limit::Session));
        assert_eq!(p.next_wait(S(1900), true), (S(0), Limit::Session));
        assert_eq!(p.next_wait(S(5000), false), (S(0), Limit::Session));
        let off = pace(None, 0, 30);
        assert_eq!(off.next_wait(S(1_000_000), true), (S(300), Limit::Idle));
        let unlimited = Pace::unlimited();
        assert_eq!(
            unlimited.next_wait(S(9), true),
            (Duration::MAX, Limit::Idle)
        );
    }

    #[test]
    fn bytes_earn_credit_up_to_the_window_and_waiting_uses_it() {
        let mut p = pace(None, 100, 30);
        p.account(S(10), 0, true);
        assert_eq!(p.credit(), S(20));
        p.account(S(1), 150, true);
        assert_eq!(p.credit(), Duration::from_millis(20_500));
        p.account(S(0), 1_000_000, true);
        assert_eq!(p.credit(), S(30), "never more than the window");
        p.account(S(25), 0, false);
        assert_eq!(p.credit(), S(30), "a wait between commands costs nothing");
        p.account(S(40), 0, true);
        assert_eq!(p.credit(), S(0));
        assert_eq!(p.next_wait(S(200), true), (S(0), Limit::Slow));
        assert_eq!(p.next_wait(S(200), false), (S(300), Limit::Idle));
    }

    /// Simulate a client sending `rate` bytes per second, one read per second, all of
    /// it metered; the second it is cut, if it is within `limit` seconds.
    fn cut_after(rate_limit: u64, window: u64, client_rate: u64, limit: u64) -> Option<u64> {
        let mut p = pace(None, rate_limit, window);
        let mut now = S(100);
        for second in 1..=limit {
            let (wait, kind) = p.next_wait(now, true);
            if wait < S(1) {
                assert_eq!(kind, Limit::Slow);
                return Some(second - 1);
            }
            now += S(1);
            p.account(S(1), client_rate as usize, true);
        }
        None
    }

    #[test]
    fn a_client_below_the_rate_is_cut_one_at_or_above_it_never() {
        assert_eq!(cut_after(100, 30, 100, 10_000), None, "exactly the rate");
        assert_eq!(cut_after(100, 30, 1024, 10_000), None, "1 KB/s");
        let half = cut_after(100, 30, 50, 10_000).unwrap();
        assert!(
            (59..=61).contains(&half),
            "half the rate: two windows, {half}"
        );
        let crawl = cut_after(100, 30, 0, 10_000).unwrap();
        assert!((29..=30).contains(&crawl), "nothing: one window, {crawl}");
        assert_eq!(cut_after(0, 30, 0, 10_000), None, "minrate 0 is off");
    }

    #[test]
    fn one_byte_every_two_seconds_inside_a_line() {
        // The trickle: credit 30 s, 0.01 s back per byte, 2 s per byte.
        let mut p = pace(None, 100, 30);
        let mut now = S(100);
        let mut bytes = 0;
        loop {
            let (wait, kind) = p.next_wait(now, true);
            if wait < S(2) {
                now += wait;
                assert_eq!(kind, Limit::Slow);
                break;
            }
            now += S(2);
            p.account(S(2), 1, true);
            bytes += 1;
        }
        assert_eq!(bytes, 15);
        assert!(now - S(100) < S(31), "{now:?}");
    }
}
