//! Writing `control/ratelimit.blocked`, `control/ratelimit.holdauth` and
//! `control/holdbulk` (a failed write retried after [`super::RETRY`] seconds), and
//! dropping what expired from them.

use super::policy::{Kind, Level};
use super::{blocklist, Engine, HOLDBULK, RETRY};
use postern_common::atomic::write_atomic;
use postern_common::logline::LogLine;
use postern_wire::ratelimit_lists::{self, Entry, Layout};
use std::fs;
use std::io;
use std::path::PathBuf;

impl Engine {
    fn list_path(&self, layout: Layout) -> PathBuf {
        match layout {
            Layout::Blocked => self.control.path(ratelimit_lists::BLOCKED),
            Layout::Hold => self.control.path(ratelimit_lists::HOLDAUTH),
        }
    }

    /// Add an entry to a list file (which also drops what expired).
    pub(super) fn add_entry(
        &mut self,
        layout: Layout,
        kind: Kind,
        key: &str,
        until: u64,
        now: u64,
    ) {
        let entry = Entry {
            kind: match layout {
                Layout::Blocked => kind.name().to_string(),
                Layout::Hold => String::new(),
            },
            key: key.to_string(),
            until,
        };
        self.update_list(layout, &[entry], now);
    }

    fn update_list(&mut self, layout: Layout, add: &[Entry], now: u64) {
        let path = self.list_path(layout);
        let mut add_all = std::mem::take(&mut self.pending[layout as usize]);
        add_all.extend_from_slice(add);
        match blocklist::update(&path, layout, &add_all, now) {
            Ok(u) => {
                self.next[layout as usize] = u.next;
                for e in u.expired {
                    let (kind, level) = match layout {
                        Layout::Blocked => (e.kind.as_str(), Level::Block),
                        Layout::Hold => ("auth", Level::Hold),
                    };
                    if let Some(k) = Kind::from_name(kind) {
                        // Blocked again if it goes on sending while still over.
                        self.windows[k.index()].reset_level(&e.key, level.index());
                    }
                    LogLine::event("ratelimit")
                        .kv("kind", kind)
                        .kv("key", &e.key)
                        .kv("action", "expire")
                        .kv(
                            "list",
                            if layout == Layout::Blocked {
                                "blocked"
                            } else {
                                "holdauth"
                            },
                        )
                        .kv("until", e.until)
                        .emit();
                }
                for bad in u.bad {
                    LogLine::event("error")
                        .kv("what", "badline")
                        .kv("file", path.display())
                        .kv("line", bad)
                        .emit();
                }
            }
            Err(e) => {
                // Keep what was to be added and try again shortly.
                add_all.truncate(blocklist::MAX_ENTRIES);
                self.pending[layout as usize] = add_all;
                self.next[layout as usize] = Some(now + RETRY);
                LogLine::event("error")
                    .kv("what", "write")
                    .kv("error", &e.msg)
                    .emit();
            }
        }
    }

    pub(super) fn set_holdbulk_for(&mut self, kind: &str, key: &str, until: u64) {
        let path = self.control.path(HOLDBULK);
        let until = until.max(read_holdbulk(&path).unwrap_or(0));
        let text = format!(
            "{until}\n# postern-ratelimit: {kind} {key} went paranoid; postern-send holds non-priority inbound mail until then\n"
        );
        match write_atomic(&path, text.as_bytes(), blocklist::MODE) {
            Ok(()) => {
                self.next[2] = Some(until);
                LogLine::event("holdbulk")
                    .kv("action", "set")
                    .kv("until", until)
                    .emit();
            }
            Err(e) => LogLine::event("error")
                .kv("what", "write")
                .kv(
                    "error",
                    format!("unable to write {}: {}", path.display(), e),
                )
                .emit(),
        }
    }

    /// Drop whatever expired by `now` from the lists and holdbulk.
    pub fn expire(&mut self, now: u64) {
        for layout in [Layout::Blocked, Layout::Hold] {
            if self.next[layout as usize].is_some_and(|t| t <= now) {
                self.update_list(layout, &[], now);
            }
        }
        if self.next[2].is_some_and(|t| t <= now) {
            let path = self.control.path(HOLDBULK);
            self.next[2] = match read_holdbulk(&path) {
                Some(until) if until <= now => {
                    match fs::remove_file(&path) {
                        Ok(()) => LogLine::event("holdbulk")
                            .kv("action", "expire")
                            .kv("until", until)
                            .emit(),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => LogLine::event("error")
                            .kv("what", "write")
                            .kv("error", format!("unable to remove {}: {e}", path.display()))
                            .emit(),
                    }
                    None
                }
                Some(until) => Some(until),
                None => None,
            };
        }
    }
}

/// The UNTIL on holdbulk's first line, if the file exists and has one.
fn read_holdbulk(path: &std::path::Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let first = postern_common::control::parse_lines(&text)
        .into_iter()
        .next()?;
    first.text.split_whitespace().next()?.parse().ok()
}
