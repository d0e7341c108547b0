//! Alert mails to `control/alertto`, queued through postern-queue with the qmail-queue
//! protocol (message on fd 0, envelope on fd 1, both temporary files:
//! [`postern_wire::qmail_queue::client::command_with_files`]) and an empty envelope
//! sender, so a failed alert can never bounce back into a loop.
//!
//! postern-ratelimit reads signals through a signalfd, so it keeps HUP and TERM blocked;
//! a blocked mask survives `exec`, and std's `Command` does not reset it. The queue
//! client starts every queue program with default signal handling, and we wait for it
//! at most [`QUEUE_TIMEOUT`].

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use postern_wire::qmail_queue::{client, Envelope};
use std::time::{Duration, Instant};

/// How long postern-queue may take before we give up on it (and kill it).
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(120);

/// The alert message text.
pub fn compose(me: &str, to: &str, subject: &str, body: &str) -> String {
    let date = chrono::Local::now().to_rfc2822();
    let id = format!(
        "<{}.{}.ratelimit@{me}>",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        std::process::id()
    );
    format!(
        "From: postern-ratelimit <MAILER-DAEMON@{me}>\nTo: <{to}>\nSubject: {subject}\n\
         Date: {date}\nMessage-ID: {id}\nAuto-Submitted: auto-generated\n\
         Content-Type: text/plain; charset=utf-8\n\n{body}"
    )
}

/// Queue `text` for `to`. An error says why; the caller logs it and carries on.
pub fn send(to: &str, text: &str) -> std::result::Result<(), String> {
    let envelope = Envelope::new(b"", &[to]);
    let program = client::postern_queue();
    // Our signalfd keeps HUP and TERM blocked: the queue client starts it clean.
    let mut cmd =
        client::command_with_files(&program, &[text.as_bytes()], &envelope, tempfile::tempfile)
            .map_err(|e| e.to_string())?;
    let child = cmd.spawn().map_err(|e| {
        format!(
            "unable to run {}: {}",
            program.display(),
            postern_common::exit::describe_io(&e)
        )
    })?;
    let pid = Pid::from_raw(child.id() as i32);
    match wait_for(pid, QUEUE_TIMEOUT) {
        Some(WaitStatus::Exited(_, 0)) => Ok(()),
        Some(WaitStatus::Exited(_, code)) => Err(format!("postern-queue exited {code}")),
        Some(other) => Err(format!("postern-queue ended: {other:?}")),
        None => Err(format!(
            "postern-queue did not finish within {}s",
            QUEUE_TIMEOUT.as_secs()
        )),
    }
}

/// Wait for `pid` to end, at most `timeout`; past it, kill it and reap it.
fn wait_for(pid: Pid, timeout: Duration) -> Option<WaitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => return Some(status),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
