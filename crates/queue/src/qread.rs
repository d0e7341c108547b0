//! postern-qread: list the queue, and ask postern-send to delete, hold, release or
//! requeue a message (docs/postern-qread.md). It never changes delivery state itself:
//! an action is an empty file `ctl/ACTION.ID` plus a pull of the trigger
//! (docs/queue.md, *Admin actions*).
//!
//! The listing reads each directory once and each message's header (at most
//! [`queue_file::MAX_ENVELOPE`] bytes) once, so 100 000 messages cost a few hundred
//! thousand system calls, never a quadratic scan.

use crate::layout::{self, Action, Id, Queue};
use postern_common::logline::LogLine;
use postern_common::{Error, Result, ResultExt};
use postern_wire::queue_file;
use postern_wire::send_state::Summary;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Usage line.
pub const USAGE: &str = "postern-qread [--delete|--hold|--release|--requeue ID ...]";
/// Mode of request files.
pub const REQUEST_MODE: u32 = 0o640;

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    List,
    Request(Action, Vec<Id>),
}

/// Parse the command line (without the program name).
pub fn parse_args(args: &[String]) -> Result<Command> {
    let Some(first) = args.first() else {
        return Ok(Command::List);
    };
    let action = Action::ALL
        .into_iter()
        .find(|a| first.strip_prefix("--") == Some(a.name()))
        .ok_or_else(|| Error::usage(USAGE))?;
    if args.len() < 2 {
        return Err(Error::usage(USAGE));
    }
    let ids = args[1..]
        .iter()
        .map(|a| {
            Id::parse(a).ok_or_else(|| {
                Error::perm(format!(
                    "not a message ID: {}",
                    postern_common::logline::printable(a.as_bytes())
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Command::Request(action, ids))
}

/// A message found in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: Id,
    /// `new` (committed, not taken over) or `queued` (in mess/).
    pub place: &'static str,
}

/// Every message in `new/` and `mess/`, sorted by ID (arrival). A message seen in both
/// (its takeover rename happened between the two listings) is listed once, as queued.
pub fn entries(queue: &Queue) -> Result<Vec<Entry>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (dir, place) in [(queue.mess(), "queued"), (queue.new_dir(), "new")] {
        for entry in std::fs::read_dir(&dir).temp(format!("unable to read {}", dir.display()))? {
            let entry = entry.temp(format!("unable to read {}", dir.display()))?;
            let Some(id) = entry.file_name().to_str().and_then(Id::parse) else {
                continue;
            };
            if seen.insert(id) {
                out.push(Entry { id, place });
            }
        }
    }
    out.sort_by_key(|e| e.id);
    Ok(out)
}

/// Names in `ctl/` (pending requests).
fn pending_requests(queue: &Queue) -> HashSet<String> {
    std::fs::read_dir(queue.ctl())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `3d4h`, `5m12s`, `7s`.
pub fn format_age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// The `key=value` words of a LogLine without its leading `event=NAME `.
fn words(line: LogLine, event: &str) -> String {
    line.as_str()[format!("event={event} ").len()..].to_string()
}

/// The listing of one message: a line for it, an indented line per recipient.
pub fn describe(
    queue: &Queue,
    entry: &Entry,
    requests: &HashSet<String>,
    now: u64,
) -> Option<String> {
    let ids = entry.id.to_string();
    let path = if entry.place == "new" {
        queue.new_file(&ids)
    } else {
        queue.mess_file(&ids)
    };
    let qf = match queue_file::open(&path) {
        Ok(qf) => qf,
        // Gone since the directory was read: delivered meanwhile.
        Err(_) if path.symlink_metadata().is_err() => return None,
        Err(e) => return Some(format!("id={ids} error={:?}\n", e.msg)),
    };
    let env = &qf.envelope;
    let birth = env.time.unwrap_or(entry.id.secs);
    let st: Option<Summary> = Summary::read(&queue.state_file(&ids));
    let held = queue.hold_file(&ids).symlink_metadata().is_ok();
    let mut line = LogLine::event("m")
        .kv("id", &ids)
        .kv("age", format_age(now.saturating_sub(birth)))
        .kv("size", qf.message_len())
        .kv(
            "from",
            format!("<{}>", String::from_utf8_lossy(&env.sender)),
        )
        .kv("state", entry.place);
    if held {
        line = line.kv("held", "yes");
    }
    if env.priority || st.as_ref().is_some_and(|s| s.priority) {
        line = line.kv("priority", 1);
    }
    for a in Action::ALL {
        if requests.contains(&a.request_name(&ids)) {
            line = line.kv("request", a.name());
        }
    }
    let mut out = words(line, "m");
    out.push('\n');
    // Once postern-send has written state/ID, its recipient lines are the authority
    // (it may have rewritten addresses); before that, the envelope's: all `new` in
    // new/, all `todo` in mess/ (taken over, nothing recorded yet: postern-send writes
    // a state only when a result must survive a crash, docs/queue.md).
    let unrecorded = if entry.place == "new" { "new" } else { "todo" };
    let lines: Vec<LogLine> = match st.as_ref().filter(|s| !s.rcpts.is_empty()) {
        Some(s) => s
            .rcpts
            .iter()
            .map(|rs| {
                let mut rl = LogLine::event("r")
                    .kv("rcpt", format!("<{}>", rs.addr))
                    .kv("status", &rs.status);
                for (k, v) in [("kind", &rs.kind), ("tries", &rs.tries), ("last", &rs.last)] {
                    if !v.is_empty() {
                        rl = rl.kv(k, v);
                    }
                }
                rl
            })
            .collect(),
        None => env
            .recipients
            .iter()
            .map(|r| {
                LogLine::event("r")
                    .kv("rcpt", format!("<{}>", String::from_utf8_lossy(r)))
                    .kv("status", unrecorded)
            })
            .collect(),
    };
    for rl in lines {
        out.push_str("  ");
        out.push_str(&words(rl, "r"));
        out.push('\n');
    }
    Some(out)
}

/// Write the whole listing to `out`.
pub fn list(queue: &Queue, out: &mut impl Write) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let requests = pending_requests(queue);
    for entry in entries(queue)? {
        if let Some(text) = describe(queue, &entry, &requests, now) {
            out.write_all(text.as_bytes())
                .temp("unable to write the listing")?;
        }
    }
    out.flush().temp("unable to write the listing")
}

/// Write `ctl/ACTION.ID` for each ID (all checked first: an unknown ID changes nothing),
/// fsync `ctl/`, pull the trigger. Returns whether postern-send was listening.
pub fn request(queue: &Queue, action: Action, ids: &[Id]) -> Result<bool> {
    for id in ids {
        if queue.locate(&id.to_string()).is_none() {
            return Err(Error::perm(format!("no such message in the queue: {id}")));
        }
    }
    for id in ids {
        let path = queue.ctl_file(action, &id.to_string());
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(REQUEST_MODE)
            .open(&path)
            .temp(format!("unable to write {}", path.display()))?;
    }
    postern_common::atomic::fsync_dir(&queue.ctl())
        .temp(format!("unable to fsync {}", queue.ctl().display()))?;
    Ok(layout::pull_trigger(queue))
}

/// The program.
pub fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let queue = Queue::for_home(&postern_common::home::postern_home());
    match parse_args(&args)? {
        Command::List => list(&queue, &mut io::stdout().lock()),
        Command::Request(action, ids) => {
            let listening = request(&queue, action, &ids)?;
            for id in &ids {
                println!("{id}: {} requested", action.name());
            }
            if !listening {
                postern_common::exit::warn(
                    "postern-qread",
                    "postern-send is not running: the request waits in queue/ctl/ until it starts",
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_args(&[]).unwrap(), Command::List);
        let id = Id {
            secs: 1,
            nanos: 2,
            pid: 3,
        };
        assert_eq!(
            parse_args(&s(&["--hold", "1.000000002.3"])).unwrap(),
            Command::Request(Action::Hold, vec![id])
        );
        assert_eq!(
            parse_args(&s(&["--hold"])).unwrap_err().kind,
            postern_common::Kind::Usage
        );
        assert_eq!(
            parse_args(&s(&["--zap", "1.2.3"])).unwrap_err().kind,
            postern_common::Kind::Usage
        );
        assert_eq!(
            parse_args(&s(&["--delete", "../x"])).unwrap_err().kind,
            postern_common::Kind::Perm
        );
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(7), "7s");
        assert_eq!(format_age(312), "5m12s");
        assert_eq!(format_age(3 * 3600 + 120), "3h2m");
        assert_eq!(format_age(2 * 86400 + 5 * 3600), "2d5h");
    }
}
