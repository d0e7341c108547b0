//! The schedule: which messages are due on which channel, and starting as many
//! deliveries as the concurrency limits allow.

use super::*;

impl Scheduler {
    pub(super) fn limit(&self, c: Channel) -> usize {
        match c {
            Channel::Local => self.cfg.concurrency_local,
            Channel::Remote => self.cfg.concurrency_remote,
        }
    }

    /// Put a message in the schedule of every channel it still has recipients on, at
    /// `st.next` (a finished message goes in the local one, to be completed).
    pub(super) fn schedule(&mut self, id: &str, st: &State) {
        if self.held.contains(id) {
            return;
        }
        let mut any = false;
        for c in CHANNELS {
            if pending_on(st, c) {
                self.sched[lane(c)].insert(id, st.next, st.priority);
                any = true;
            }
        }
        if !any {
            self.sched[0].insert(id, st.next, st.priority);
        }
    }

    pub(super) fn unschedule(&mut self, id: &str) {
        for s in &mut self.sched {
            s.remove(id);
        }
    }

    /// Take over what is in new/ and carry out admin requests.
    pub(super) fn scan(&mut self) {
        let (list, trouble) =
            queue_dirs::take_over_new(&self.q, &self.home, &self.cfg, &mut self.corrupt);
        for (id, st) in list {
            self.schedule(&id, &st);
            self.keep_fresh(id, st);
        }
        if let Some(e) = trouble {
            error_event(&e.msg);
        }
        // After the takeover, so a request for a message that was still in new/ finds it
        // in mess/; one for a message not taken over yet waits (see admin).
        self.admin();
    }

    /// Start due messages and jobs, within the concurrency limits of each channel.
    pub(super) fn fill(&mut self) {
        if self.stopping {
            return;
        }
        let t = now();
        for c in CHANNELS {
            let l = lane(c);
            while self.pending[l].len() < self.limit(c) {
                let Some(id) = self.sched[l].pop_due(t) else {
                    break;
                };
                self.start_message(&id, c, t);
            }
            while self.running[l] < self.limit(c) {
                let Some(job) = self.pending[l].pop_front() else {
                    break;
                };
                self.running[l] += 1;
                jobs::start(self.q.clone(), self.progs.clone(), job, self.tx.clone());
            }
        }
    }

    pub(super) fn running(&self) -> usize {
        self.running[0] + self.running[1]
    }
}
