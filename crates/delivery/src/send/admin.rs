//! Admin requests (`posternctl queue …` through `queue/ctl/`) and SIGHUP's reload.

use super::*;

impl Scheduler {
    /// Carry out `ctl/ACTION.ID` requests. postern-qread accepts IDs still in new/: a
    /// request for a message not taken over yet stays in ctl/ until it is (the next
    /// scan), except for a corrupt file we will never take over, which a `delete`
    /// removes and any other action reports.
    pub(super) fn admin(&mut self) {
        let Ok(names) = self.q.list("ctl") else {
            return;
        };
        for name in names.into_iter().take(MAX_CTL) {
            let request = self.q.path("ctl", &name);
            let (action, id) = name.split_once('.').unwrap_or((name.as_str(), ""));
            let in_mess = queue_dirs::valid_id(id) && queue_dirs::exists(&self.q.path("mess", id));
            let in_new = queue_dirs::valid_id(id) && queue_dirs::exists(&self.q.path("new", id));
            if !in_mess && in_new && !self.corrupt.contains(id) {
                continue; // not taken over yet: the request waits
            }
            let _ = fs::remove_file(&request);
            if !in_mess {
                let result = if in_new && action == "delete" {
                    self.delete_new(id)
                } else if in_new {
                    Some("the message is corrupt")
                } else {
                    Some("no such message")
                };
                let mut line = LogLine::event("admin").kv("id", id).kv("action", action);
                if let Some(r) = result {
                    line = line.kv("result", r);
                }
                line.emit();
                continue;
            }
            let t = now();
            match action {
                "delete" => match self.active.get_mut(id) {
                    // Dropped when the deliveries in flight are back.
                    Some(a) => {
                        a.delete = true;
                        self.unschedule(id);
                        self.parked.remove(id);
                    }
                    None => self.delete(id),
                },
                "hold" => {
                    // The marker is the record of the hold (a message may have no
                    // state file yet): durable before the request is gone.
                    let written = fs::write(self.q.path("hold", id), b"")
                        .and_then(|()| postern_common::atomic::fsync_dir(&self.q.dir("hold")));
                    if let Err(e) = written {
                        error_event(&format!("unable to write hold/{id}: {e}"));
                        continue;
                    }
                    self.held.insert(id.to_string());
                    self.unschedule(id);
                    self.parked.remove(id);
                }
                "release" => {
                    let _ = fs::remove_file(self.q.path("hold", id));
                    if self.held.remove(id) && !self.active.contains_key(id) {
                        match self.load_state(id) {
                            Ok(Some(mut st)) => {
                                st.next = t;
                                self.schedule(id, &st);
                                // Kept for its attempt (it may have no state file).
                                self.keep_fresh(id.to_string(), st);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                error_event(&e.msg);
                                self.sched[0].insert(id, t + TROUBLE_RETRY_SECS, false);
                            }
                        }
                    }
                }
                "requeue" => {
                    for sc in &mut self.sched {
                        sc.advance(id, t);
                    }
                    // A message parked by a hold is looked at again (and parked again
                    // while the hold is in force).
                    self.unpark(id, t);
                }
                _ => {
                    LogLine::event("admin")
                        .kv("id", id)
                        .kv("action", action)
                        .kv("result", "unknown action")
                        .emit();
                    continue;
                }
            }
            if action != "delete" {
                LogLine::event("admin")
                    .kv("id", id)
                    .kv("action", action)
                    .emit();
            }
        }
    }

    /// Delete a corrupt message still in new/ (with the state an interrupted takeover
    /// may have left). `None` when done, else the reason it was not.
    pub(super) fn delete_new(&mut self, id: &str) -> Option<&'static str> {
        let _ = fs::remove_file(self.q.path("state", id));
        match fs::remove_file(self.q.path("new", id)) {
            Ok(()) => {
                self.corrupt.remove(id);
                None
            }
            Err(e) => {
                error_event(&format!("unable to remove new/{id}: {e}"));
                Some("not removed")
            }
        }
    }

    pub(super) fn reload(&mut self) {
        match Config::load(&self.control) {
            Ok(cfg) => {
                self.cfg = cfg;
                self.progs.remote_ids = super::startup::remote_ids(&self.cfg);
                LogLine::event("reload").emit();
            }
            Err(e) => error_event(&format!("control files not reloaded: {}", e.msg)),
        }
        self.refresh_holds(now());
    }
}
