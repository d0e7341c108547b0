//! Finding and running the sibling programs: postern-send runs postern-local and
//! postern-remote, and postern-send and postern-local run postern-queue. A sibling is
//! looked for next to the running executable first (an install keeps them together;
//! so does cargo), then on `$PATH`.

use postern_common::{Error, Result, ResultExt};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Path of the program `name`: beside our own executable, else `name` for `$PATH`.
pub fn sibling(name: &str) -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from(name)
}

/// Build an envelope in the qmail-queue protocol: `F…\0T…\0…\0`.
pub fn envelope(sender: &[u8], recipients: &[&[u8]]) -> Vec<u8> {
    let mut env = Vec::new();
    env.push(b'F');
    env.extend_from_slice(sender);
    env.push(0);
    for r in recipients {
        env.push(b'T');
        env.extend_from_slice(r);
        env.push(0);
    }
    env.push(0);
    env
}

/// Queue a message through postern-queue: `prefix` then the rest of `body` on fd 0,
/// the envelope on fd 1. Exit codes follow qmail-queue: 11–40 permanent, the rest
/// temporary (interop §5.2).
pub fn inject(
    prefix: &[u8],
    body: &mut dyn Read,
    sender: &[u8],
    recipients: &[&[u8]],
) -> Result<()> {
    let (env_read, env_write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe().temp("unable to make a pipe")?;
    let prog = sibling("postern-queue");
    let mut child = Command::new(&prog)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(env_read))
        .spawn()
        .temp(format!("unable to run {}", prog.display()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::temp("no pipe to postern-queue"))?;
    // postern-queue reads the message to EOF before the envelope; a write error means
    // it died early, and its exit code says why.
    let wrote = stdin
        .write_all(prefix)
        .and_then(|_| std::io::copy(body, &mut stdin).map(|_| ()));
    drop(stdin);
    let mut env_file = std::fs::File::from(env_write);
    let wrote_env = if wrote.is_ok() {
        env_file.write_all(&envelope(sender, recipients))
    } else {
        Ok(())
    };
    drop(env_file);
    let status = child.wait().temp("unable to wait for postern-queue")?;
    match status.code() {
        Some(0) if wrote.is_ok() && wrote_env.is_ok() => Ok(()),
        Some(code @ 11..=40) => Err(Error::perm(format!(
            "postern-queue refused the message (exit {code}) (#5.3.0)"
        ))),
        Some(code) => Err(Error::temp(format!(
            "postern-queue failed (exit {code}) (#4.3.0)"
        ))),
        None => Err(Error::temp("postern-queue crashed (#4.3.0)")),
    }
}
