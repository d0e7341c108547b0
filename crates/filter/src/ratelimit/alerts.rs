//! Alert mails to `control/alertto`, queued through postern-queue with the qmail-queue
//! protocol (message on fd 0, envelope on fd 1, both temporary files) and an empty
//! envelope sender, so a failed alert can never bounce back into a loop.
//!
//! postern-ratelimit reads signals through a signalfd, so it keeps HUP and TERM blocked;
//! a blocked mask survives `exec`, and std's `Command` does not reset it. The queue
//! program is therefore started with `posix_spawn`, an empty signal mask and SIGPIPE back
//! to its default (nix's safe wrapper: no `unsafe` here).

use crate::envelope::Envelope;
use crate::qq;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
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
    let envelope = Envelope {
        sender: String::new(),
        recipients: vec![to.to_string()],
    };
    let message = qq::temp_with(&[text.as_bytes()]).map_err(|e| e.to_string())?;
    let env = qq::temp_with(&[&envelope.to_bytes()]).map_err(|e| e.to_string())?;
    let program = qq::queue_program();
    let describe = |e: nix::Error| format!("unable to run {}: {}", program.display(), e.desc());
    let path = CString::new(program.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let environ: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let mut attr = nix::spawn::PosixSpawnAttr::init().map_err(describe)?;
    attr.set_sigmask(&SigSet::empty()).map_err(describe)?;
    // Rust's runtime ignores SIGPIPE, and an ignored signal survives exec too.
    let mut default = SigSet::empty();
    default.add(Signal::SIGPIPE);
    attr.set_sigdefault(&default).map_err(describe)?;
    attr.set_flags(
        nix::spawn::PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | nix::spawn::PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )
    .map_err(describe)?;
    let mut actions = nix::spawn::PosixSpawnFileActions::init().map_err(describe)?;
    actions.add_dup2(message.as_raw_fd(), 0).map_err(describe)?;
    actions.add_dup2(env.as_raw_fd(), 1).map_err(describe)?;
    let args = [path.clone()];
    let pid = if program.is_absolute() {
        nix::spawn::posix_spawn(path.as_c_str(), &actions, &attr, &args, &environ)
    } else {
        nix::spawn::posix_spawnp(&path, &actions, &attr, &args, &environ)
    }
    .map_err(describe)?;
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
