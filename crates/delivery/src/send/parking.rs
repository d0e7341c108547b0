//! Messages kept out of the schedule by the rate limiter's holds (`holdbulk`,
//! `ratelimit.holdauth`): parked until the hold is over.

use super::*;

impl Scheduler {
    /// Whether a hold of the rate limiter keeps `st` at `t`, and why.
    pub(super) fn hold_reason(&self, st: &State, t: u64) -> Option<hold::Reason> {
        let msg = hold::Message {
            // Only Ipriority=1: prioritysenders/prioritysubject can be forged.
            trusted: st.trusted,
            sender: st.from.as_deref().unwrap_or(""),
            auth: st.auth.as_deref(),
            rcpts: st
                .rcpts
                .iter()
                .map(|r| (r.addr.as_str(), r.channel == Channel::Local))
                .collect(),
        };
        if st.from.is_none() && st.auth.is_none() {
            // Sender unknown (the queue file could not be read): holdbulk still applies
            // by the other rules; holdauth cannot, and the bounce rule must not.
            let unknown = hold::Message { sender: "?", ..msg };
            return unknown.held(&self.holds, t);
        }
        msg.held(&self.holds, t)
    }

    /// Whether every recipient `st` still has is a priority one: `holdbulk` does not
    /// hold the message at all.
    pub(super) fn only_priority_rcpts(&self, st: &State) -> bool {
        st.rcpts
            .iter()
            .filter(|r| r.status.pending())
            .all(|r| hold::priority_rcpt(&r.addr, r.channel == Channel::Local, &self.cfg.alert_to))
    }

    /// The recipients of `st` on channel `c` that `holdbulk` lets go although it holds
    /// the message: pending priority recipients (postmaster@, abuse@, alertto).
    pub(super) fn bulk_released(&self, st: &State, c: Channel) -> Vec<usize> {
        st.rcpts
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.channel == c
                    && r.status.pending()
                    && hold::priority_rcpt(&r.addr, r.channel == Channel::Local, &self.cfg.alert_to)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Keep message `id` off channel `c` while its hold is in force: it leaves the
    /// schedule and waits in `parked` until [`Self::refresh_holds`] finds the hold over.
    /// The start of a hold is written to its state (`holdsince`) and logged once.
    pub(super) fn park(
        &mut self,
        id: &str,
        c: Channel,
        st: &mut State,
        reason: hold::Reason,
        t: u64,
    ) {
        let user = st
            .auth
            .as_deref()
            .or(st.from.as_deref())
            .unwrap_or("")
            .to_string();
        let p = self.parked.entry(id.to_string()).or_insert(Parked {
            channels: [false, false],
            priority: st.priority,
            reason,
            user,
        });
        p.reason = reason;
        p.channels[lane(c)] = true;
        if st.holdsince.is_none() {
            st.holdsince = Some(t);
            if let Err(e) = st.store(&self.q.dir("state"), id) {
                error_event(&e.msg);
            }
            LogLine::event("hold")
                .kv("id", id)
                .kv("reason", reason.name())
                .emit();
        }
    }

    /// Put a parked message back in the schedule of the channels it was parked on, due
    /// at `t` (its next attempt decides whether it is still held).
    pub(super) fn unpark(&mut self, id: &str, t: u64) {
        let Some(p) = self.parked.remove(id) else {
            return;
        };
        if self.held.contains(id) {
            return;
        }
        for c in CHANNELS {
            if p.channels[lane(c)] {
                self.sched[lane(c)].insert(id, t, p.priority);
            }
        }
    }

    /// Reread the hold files, and put back in the schedule every parked message whose
    /// hold is over. Called at start, on SIGHUP, every [`hold::REREAD_SECS`] and when an
    /// entry in force runs out.
    pub(super) fn refresh_holds(&mut self, t: u64) {
        let (holds, errors) = hold::Holds::load(&self.control, &self.holds);
        if errors.is_empty() {
            self.hold_error = None;
        }
        for e in errors {
            if self.hold_error.as_deref() != Some(e.msg.as_str()) {
                error_event(&e.msg);
                self.hold_error = Some(e.msg);
            }
        }
        self.holds = holds;
        // In memory only: each parked message knows what holds it.
        let over: Vec<String> = self
            .parked
            .iter()
            .filter(|(_, p)| match p.reason {
                hold::Reason::Bulk => !self.holds.bulk_in_force(t),
                hold::Reason::Auth => !self.holds.auth_in_force(&p.user, t),
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in over {
            self.unpark(&id, t);
        }
        let next = t + hold::REREAD_SECS;
        self.next_holds = self.holds.next_expiry(t).map_or(next, |u| u.min(next));
    }
}
