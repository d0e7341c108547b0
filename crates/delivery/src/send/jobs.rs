//! Running one delivery: postern-local for one local recipient, or postern-remote for
//! the recipients of one domain. Each runs in its own thread, which waits for the child
//! and sends the per-recipient results back to the scheduler over a channel.
//!
//! The child gets `mess/ID` on fd 0, positioned at the message (offset 12 + E).
//! Local deliveries go to a running postern-local worker ([`crate::local_worker`]),
//! which gets the same open file; as root, one postern-local per delivery, whose stdout
//! and stderr share one pipe and whose last line is the reason.
//! postern-remote's stdout is its report; its stderr goes to our log.

use super::queue_dirs::Queue;
use super::Event;
use crate::local_worker::Pool;
use postern_wire::delivery_report;
use postern_wire::queue_file;
use postern_wire::send_state::Channel;
use postern_wire::verdict::{Outcome, Verdict};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// Most output bytes kept from a delivery program.
pub const MAX_OUTPUT: u64 = 64 * 1024;

/// One delivery to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub channel: Channel,
    /// Indexes into the state's recipients.
    pub idxs: Vec<usize>,
    pub addrs: Vec<String>,
    /// The domain (remote jobs).
    pub domain: String,
    /// The message was past queuelifetime when this attempt started: a temporary
    /// failure is final.
    pub expired: bool,
}

/// The programs and the account they run as.
#[derive(Debug, Clone)]
pub struct Programs {
    pub local: PathBuf,
    pub remote: PathBuf,
    /// uid/gid for postern-remote when we are root.
    pub remote_ids: Option<(u32, u32)>,
    /// Running postern-local workers (`None`: one postern-local per delivery, as when
    /// we are root: a worker must not be).
    pub local_workers: Option<Arc<Pool>>,
}

impl Programs {
    pub fn new(local: PathBuf, remote: PathBuf, remote_ids: Option<(u32, u32)>) -> Programs {
        let local_workers =
            (!postern_common::privilege::is_root()).then(|| Arc::new(Pool::new(local.clone())));
        Programs {
            local,
            remote,
            remote_ids,
            local_workers,
        }
    }
}

fn read_bounded(r: &mut dyn Read) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = r.take(MAX_OUTPUT).read_to_end(&mut out);
    // Drain the rest so the child never blocks on a full pipe.
    let _ = std::io::copy(r, &mut std::io::sink());
    out
}

/// The reason line of postern-local's output: its last non-empty line, without the
/// `postern-local: fatal: ` prefix.
pub fn reason(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.strip_prefix("postern-local: fatal: ")
        .unwrap_or(line)
        .to_string()
}

fn run(q: &Queue, progs: &Programs, job: &Job) -> Result<Vec<Outcome>, String> {
    let qf = queue_file::open(&q.path("mess", &job.id)).map_err(|e| e.msg)?;
    let sender = std::ffi::OsStr::from_bytes(&qf.envelope.sender).to_os_string();
    let n = job.idxs.len();
    let f = qf.file;
    match job.channel {
        Channel::Local => {
            if let Some(pool) = &progs.local_workers {
                let sender = &qf.envelope.sender;
                let priority = qf.envelope.priority;
                return Ok(vec![pool.deliver(
                    &f,
                    sender,
                    job.addrs[0].as_bytes(),
                    priority,
                )]);
            }
            // Close-on-exec: a delivery started by another thread meanwhile must not
            // inherit the write end, or our read would wait for that program to end.
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| format!("unable to make a pipe: {e}"))?;
            let w2 = w
                .try_clone()
                .map_err(|e| format!("unable to make a pipe: {e}"))?;
            let mut cmd = Command::new(&progs.local);
            if qf.envelope.priority {
                cmd.env(crate::local::PRIORITY_ENV, "1");
            } else {
                cmd.env_remove(crate::local::PRIORITY_ENV);
            }
            postern_common::sys::with_default_signals(&mut cmd)
                .arg("--")
                .arg(&sender)
                .arg(&job.addrs[0])
                .stdin(Stdio::from(f))
                .stdout(Stdio::from(w))
                .stderr(Stdio::from(w2));
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("unable to run {}: {e} (#4.3.0)", progs.local.display()))?;
            drop(cmd);
            let out = read_bounded(&mut std::fs::File::from(r));
            let status = child
                .wait()
                .map_err(|e| format!("unable to wait for postern-local: {e}"))?;
            let text = reason(&out);
            // The one-shot program's exit code is its verdict (docs/postern-local.md).
            let verdict = match status.code() {
                Some(0) => Verdict::Delivered,
                Some(100) => Verdict::Failed,
                Some(111) => Verdict::Deferred,
                Some(c) => {
                    return Ok(vec![Outcome::deferred(format!(
                        "postern-local exited {c}: {text} (#4.3.0)"
                    ))])
                }
                None => return Ok(vec![Outcome::deferred("postern-local crashed (#4.3.0)")]),
            };
            Ok(vec![Outcome::new(verdict, text)])
        }
        Channel::Remote => {
            let mut cmd = Command::new(&progs.remote);
            postern_common::sys::with_default_signals(&mut cmd)
                .arg(&job.domain)
                .arg(&sender)
                .args(&job.addrs)
                .stdin(Stdio::from(f))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            if let Some((uid, gid)) = progs.remote_ids {
                cmd.uid(uid).gid(gid);
            }
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("unable to run {}: {e} (#4.3.0)", progs.remote.display()))?;
            let out = match child.stdout.take() {
                Some(mut s) => read_bounded(&mut s),
                None => Vec::new(),
            };
            let status = child
                .wait()
                .map_err(|e| format!("unable to wait for postern-remote: {e}"))?;
            match status.code() {
                Some(0) => Ok(delivery_report::per_recipient(&out, n)),
                Some(100) => Ok(vec![
                    Outcome::failed(
                        "postern-remote refused its arguments (#5.3.5)"
                    );
                    n
                ]),
                _ => Ok(vec![
                    Outcome::deferred(
                        "Unable to run postern-remote. (#4.3.0)"
                    );
                    n
                ]),
            }
        }
    }
}

use std::os::unix::ffi::OsStrExt;

/// Start `job` in a thread; its result arrives as [`Event::Done`].
pub fn start(q: Queue, progs: Programs, job: Job, tx: Sender<Event>) {
    let (spare_job, spare_tx) = (job.clone(), tx.clone());
    let spawned = std::thread::Builder::new()
        .name("delivery".into())
        .spawn(move || {
            let n = job.idxs.len();
            let results = match run(&q, &progs, &job) {
                Ok(r) => r,
                Err(text) => vec![Outcome::deferred(text); n],
            };
            let _ = tx.send(Event::Done { job, results });
        });
    if let Err(e) = spawned {
        // Out of threads: a temporary failure like any other, retried later.
        let n = spare_job.idxs.len();
        let text = format!("unable to start a delivery thread: {e} (#4.3.0)");
        let _ = spare_tx.send(Event::Done {
            job: spare_job,
            results: vec![Outcome::deferred(text); n],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_is_the_last_line_without_the_prefix() {
        assert_eq!(reason(b"delivered to a@b: x\n"), "delivered to a@b: x");
        assert_eq!(
            reason(b"postern-local: warning: w\npostern-local: fatal: no mailbox (#5.1.1)\n\n"),
            "no mailbox (#5.1.1)"
        );
        assert_eq!(reason(b""), "");
    }
}
