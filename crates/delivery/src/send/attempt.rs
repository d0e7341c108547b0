//! One attempt of one message: loading its state, starting its deliveries, taking in
//! their results, and finishing it (done, bounced or deleted).

use super::*;

impl Scheduler {
    /// Queue the jobs of message `id` on channel `c` — unless a hold of the rate limiter
    /// is in force for it: then it is parked instead.
    pub(super) fn start_message(&mut self, id: &str, c: Channel, t: u64) {
        if self.held.contains(id) {
            return;
        }
        let l = lane(c);
        let mut a = match self.active.remove(id) {
            Some(a) => a,
            None => {
                let mut st = match self.load_state(id) {
                    Ok(Some(st)) => st,
                    Ok(None) => return, // removed meanwhile
                    Err(e) => {
                        error_event(&e.msg);
                        self.sched[l].insert(id, t + TROUBLE_RETRY_SECS, false);
                        return;
                    }
                };
                if st.finished() {
                    self.complete(id, st);
                    return;
                }
                if st.from.is_none() {
                    // A state file written without from=: the queue file knows.
                    st.from = queue_dirs::read_sender(&self.q, id).ok();
                }
                Active {
                    state: st,
                    outstanding: [0, 0],
                    delete: false,
                }
            }
        };
        if a.outstanding[l] > 0 || a.delete {
            self.active.insert(id.to_string(), a);
            return; // this channel's attempt is still running
        }
        // Under holdbulk a held message still goes to its priority recipients (only):
        // `only` lists them, and the message is parked for the others.
        let mut only = None;
        let reason = self
            .hold_reason(&a.state, t)
            .filter(|&r| !(r == hold::Reason::Bulk && self.only_priority_rcpts(&a.state)));
        if let Some(reason) = reason {
            let released = match reason {
                hold::Reason::Bulk => self.bulk_released(&a.state, c),
                hold::Reason::Auth => Vec::new(),
            };
            self.park(id, c, &mut a.state, reason, t);
            if released.is_empty() {
                if a.outstanding != [0, 0] {
                    self.active.insert(id.to_string(), a);
                }
                return;
            }
            only = Some(released);
        } else {
            if let Some(since) = a.state.holdsince.take() {
                // A hold ended: its time does not count towards queuelifetime.
                a.state.held = a.state.held.saturating_add(t.saturating_sub(since));
            }
            if self.parked.contains_key(id) {
                self.unpark(id, t); // the hold is over for its other channel too
            }
        }
        // Past queuelifetime at the start of an attempt: this is the last one.
        let expired = t
            >= a.state
                .birth
                .saturating_add(a.state.held)
                .saturating_add(self.cfg.queue_lifetime);
        let mut new_jobs: Vec<Job> = Vec::new();
        let mut by_domain: HashMap<String, usize> = HashMap::new();
        for (i, r) in a.state.rcpts.iter().enumerate() {
            if r.channel != c || !r.status.pending() {
                continue;
            }
            if only.as_ref().is_some_and(|o| !o.contains(&i)) {
                continue; // held by holdbulk
            }
            let domain = match c {
                Channel::Local => String::new(),
                Channel::Remote => r
                    .addr
                    .rsplit_once('@')
                    .map(|(_, d)| d)
                    .unwrap_or("")
                    .to_ascii_lowercase(),
            };
            if c == Channel::Remote {
                if let Some(&j) = by_domain.get(&domain) {
                    let job: &mut Job = &mut new_jobs[j];
                    job.idxs.push(i);
                    job.addrs.push(r.addr.clone());
                    continue;
                }
                by_domain.insert(domain.clone(), new_jobs.len());
            }
            new_jobs.push(Job {
                id: id.to_string(),
                channel: c,
                idxs: vec![i],
                addrs: vec![r.addr.clone()],
                domain,
                expired,
            });
        }
        a.outstanding[l] = new_jobs.len();
        let priority = a.state.priority;
        self.active.insert(id.to_string(), a);
        for job in new_jobs {
            // The priority lane also jumps the line of jobs already waiting for a slot.
            if priority {
                self.pending[l].push_front(job);
            } else {
                self.pending[l].push_back(job);
            }
        }
        self.maybe_finish(id);
    }

    /// Keep the initial state of a message without a state file for its first attempt,
    /// up to [`MAX_FRESH`] of them (beyond, it is rebuilt from the header when due).
    pub(super) fn keep_fresh(&mut self, id: String, st: State) {
        if self.fresh.len() < MAX_FRESH {
            self.fresh.insert(id, st);
        }
    }

    /// The state of a message not active: the one kept since its takeover, else
    /// `state/ID`, else — `mess/ID` without a state means "taken over, nothing recorded
    /// yet" (docs/queue.md) — its initial state built from the queue file's header.
    /// `None` when the message is gone.
    pub(super) fn load_state(&mut self, id: &str) -> Result<Option<State>> {
        if let Some(st) = self.fresh.remove(id) {
            return Ok(Some(st));
        }
        let path = self.q.path("state", id);
        match State::load(&path) {
            Ok(st) => return Ok(Some(st)),
            Err(e) if !queue_dirs::absent(&path) => {
                return if queue_dirs::exists(&self.q.path("mess", id)) {
                    Err(e)
                } else {
                    Ok(None)
                }
            }
            Err(_) => {}
        }
        if queue_dirs::absent(&self.q.path("mess", id)) {
            return Ok(None);
        }
        let mut hosted = queue_dirs::Hosted::new(&self.home);
        queue_dirs::initial_state(&self.q, "mess", id, &self.cfg, &mut hosted)
            .map(|(st, _, _)| Some(st))
    }

    pub(super) fn done(&mut self, job: Job, results: Vec<Outcome>) {
        let l = lane(job.channel);
        self.running[l] -= 1;
        let Some(a) = self.active.get_mut(&job.id) else {
            return;
        };
        for (k, &i) in job.idxs.iter().enumerate() {
            let Outcome { verdict, text } = results
                .get(k)
                .cloned()
                .unwrap_or_else(|| Outcome::deferred("no result (#4.3.0)"));
            let r = &mut a.state.rcpts[i];
            r.tries += 1;
            let (status, text, word) = match verdict {
                Verdict::Delivered => (Status::Done, text, "ok"),
                Verdict::Failed => (Status::Failed, text, "fail"),
                Verdict::Deferred if job.expired => (
                    Status::Failed,
                    format!("{}\n{TEMP_EXPIRED}", text.trim_end()),
                    "fail",
                ),
                Verdict::Deferred => (Status::Deferred, text, "defer"),
            };
            r.status = status;
            r.last = text;
            LogLine::event("delivery")
                .kv("id", &job.id)
                .kv("rcpt", format!("<{}>", r.addr))
                .kv("kind", job.channel.name())
                .kv("result", word)
                .kv("tries", r.tries)
                .kv("text", r.last.replace('\n', " "))
                .emit();
        }
        a.outstanding[l] -= 1;
        // A message whose last recipients all succeeded is removed at once
        // (maybe_finish → complete): rewriting its state first would cost a file and two
        // fsyncs only to narrow the window in which a crash repeats a delivery. Skipping
        // it keeps "at least once": a crash before the removal means one duplicate.
        let done_clean =
            a.outstanding == [0, 0] && a.state.rcpts.iter().all(|r| r.status == Status::Done);
        if !a.delete && !done_clean {
            if let Err(e) = a.state.store(&self.q.dir("state"), &job.id) {
                error_event(&e.msg);
            }
        }
        if a.outstanding[l] == 0
            && !a.delete
            && pending_on(&a.state, job.channel)
            && !self.held.contains(&job.id)
        {
            // This channel's attempt is over: its next one, on qmail's schedule.
            let t = now();
            let next = retry::next_try(a.state.birth, t, job.channel).max(t + 1);
            let priority = a.state.priority;
            self.sched[l].insert(&job.id, next, priority);
        }
        self.maybe_finish(&job.id);
    }

    /// When no channel has work left for the message: complete it, or record the retry.
    pub(super) fn maybe_finish(&mut self, id: &str) {
        if self.active.get(id).is_none_or(|a| a.outstanding != [0, 0]) {
            return;
        }
        let Some(mut a) = self.active.remove(id) else {
            return;
        };
        if a.delete {
            self.delete(id);
            return;
        }
        if a.state.finished() {
            self.unschedule(id);
            self.complete(id, a.state);
            return;
        }
        a.state.tries += 1;
        let nexts: Vec<u64> = self.sched.iter().filter_map(|s| s.next_of(id)).collect();
        match nexts.into_iter().min() {
            Some(next) => a.state.next = next,
            // Parked by a hold: it comes back when the hold is over.
            None if self.parked.contains_key(id) => a.state.next = now(),
            None => {
                // Scheduled on no channel (after trouble): make sure it comes back.
                a.state.next = now() + TROUBLE_RETRY_SECS;
                self.schedule(id, &a.state);
            }
        }
        if let Err(e) = a.state.store(&self.q.dir("state"), id) {
            error_event(&e.msg);
        }
        LogLine::event("retry")
            .kv("id", id)
            .kv("next", a.state.next)
            .kv("tries", a.state.tries)
            .emit();
    }

    /// Every recipient is done or failed: bounce the failures once, then remove.
    ///
    /// "Bounced" is recorded in `state/ID` (stored and fsynced) *before* the bounce is
    /// queued, and a state that has it is only removed: a crash, or a failed removal,
    /// between queueing the bounce and removing the message never bounces again. If the
    /// bounce cannot be queued the record is undone and the message tried again later.
    pub(super) fn complete(&mut self, id: &str, mut st: State) {
        let failures: Vec<(String, String)> = st
            .rcpts
            .iter()
            .filter(|r| r.status == Status::Failed)
            .map(|r| (r.addr.clone(), r.last.clone()))
            .collect();
        if !failures.is_empty() && bounce_due(&st, self.rebounce.contains(id)) {
            st.bounced = true;
            if let Err(e) = st.store(&self.q.dir("state"), id) {
                error_event(&format!("bounce of {id} not queued: {}", e.msg));
                self.sched[0].insert(id, now() + TROUBLE_RETRY_SECS, st.priority);
                return;
            }
            if let Err(e) = self.bounce(id, &failures) {
                error_event(&format!("bounce of {id} not queued: {}", e.msg));
                st.bounced = false;
                if let Err(e) = st.store(&self.q.dir("state"), id) {
                    // The file still says bounced: remember here that it is not.
                    error_event(&e.msg);
                    self.rebounce.insert(id.to_string());
                }
                self.sched[0].insert(id, now() + TROUBLE_RETRY_SECS, st.priority);
                return;
            }
            self.rebounce.remove(id);
        }
        match self.q.remove(id) {
            Ok(()) => LogLine::event("done").kv("id", id).emit(),
            Err(e) => error_event(&e.msg),
        }
    }

    pub(super) fn bounce(&self, id: &str, failures: &[(String, String)]) -> Result<()> {
        let (sender, message) = queue_dirs::read_message(&self.q, id, MAX_BOUNCE_READ)?;
        let sender = String::from_utf8_lossy(&sender).into_owned();
        match bounce::plan(&sender, &self.cfg.double_bounce_to) {
            bounce::Plan::Drop => {
                LogLine::event("drop")
                    .kv("id", id)
                    .kv("reason", "triple bounce: discarding")
                    .emit();
                Ok(())
            }
            bounce::Plan::Send {
                sender: env_from,
                to,
                double,
            } => {
                let date = chrono::Utc::now()
                    .format("%a, %d %b %Y %H:%M:%S +0000")
                    .to_string();
                let head = bounce::Head {
                    host: &self.cfg.me,
                    from: &self.cfg.bounce_from,
                    to: &to,
                    double,
                    original_sender: &sender,
                    date: &date,
                };
                let text = bounce::compose(&head, failures, &message);
                crate::progs::inject(
                    &text,
                    &mut std::io::empty(),
                    env_from.as_bytes(),
                    &[to.as_bytes()],
                )?;
                LogLine::event("bounce")
                    .kv("id", id)
                    .kv("to", format!("<{to}>"))
                    .kv("kind", if double { "double" } else { "bounce" })
                    .kv("rcpts", failures.len())
                    .emit();
                Ok(())
            }
        }
    }

    pub(super) fn delete(&mut self, id: &str) {
        self.unschedule(id);
        self.held.remove(id);
        self.parked.remove(id);
        self.fresh.remove(id);
        match self.q.remove(id) {
            Ok(()) => LogLine::event("admin")
                .kv("id", id)
                .kv("action", "delete")
                .emit(),
            Err(e) => error_event(&e.msg),
        }
    }
}
