//! Recipient verification by callout, smtpd's side: for a recipient of a
//! `control/verifyrecipients` domain ([`crate::recipients::Verdict::Verify`]) an answer in
//! force in the cache (`run/verify/`, [`postern_mailstore::verifycache`]) is used as it
//! is; otherwise smtpd runs `postern-verify ADDRESS` (next to its own executable, else
//! from `$PATH`), which probes the next hop — or waits for another session's probe of the
//! same address — keeps the answer and prints it: `pass|fail|tempfail yes|no TEXT`.
//!
//! smtpd itself never connects anywhere: the prober is a program of its own, run as the
//! same network account, in its own process group, with nothing on its stdin, and killed
//! if it outlives `verifytimeout` by [`GRACE`]. Its trouble (no program, a crash, a bad
//! line) is an error, answered with a 4xx — never 250.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use postern_common::control::Control;
use postern_common::{Error, Result, ResultExt};
use postern_mailstore::verify::Settings;
use postern_mailstore::verifycache::{Answer, Cache, Outcome};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The prober.
pub const PROGRAM: &str = "postern-verify";
/// How long the prober may run beyond `verifytimeout` before it is killed.
pub const GRACE: Duration = Duration::from_secs(5);
/// Longest answer line read from the prober.
const MAX_ANSWER: u64 = 1024;

/// `postern-verify` next to our own executable, else from `$PATH`.
pub fn locate() -> PathBuf {
    postern_common::sibling::program(PROGRAM)
}

/// The prober's answer line.
pub fn parse_answer(line: &str) -> Option<Answer> {
    let line = line.strip_suffix('\n')?;
    let mut words = line.splitn(3, ' ');
    let outcome = Outcome::parse(words.next()?)?;
    let cached = match words.next()? {
        "yes" => true,
        "no" => false,
        _ => return None,
    };
    Some(Answer {
        outcome,
        cached,
        text: postern_mailstore::verifycache::clean_text(words.next().unwrap_or("")),
    })
}

/// Verify `addr` for the instance at `home`.
pub fn verify(home: &Path, program: &Path, addr: &str) -> Result<Answer> {
    let settings = Settings::load(&Control::for_home(home))?;
    // An answer in force: no process to start. A cache that cannot be read is left to
    // the prober, which says why.
    if let Ok(Some(a)) = Cache::for_home(home).lookup(addr, &settings, SystemTime::now()) {
        return Ok(a);
    }
    run(program, home, addr, settings.timeout + GRACE)
}

fn run(program: &Path, home: &Path, addr: &str, limit: Duration) -> Result<Answer> {
    let shown = program.display().to_string();
    let mut cmd = Command::new(program);
    // `--`: the address is an operand, whatever it starts with.
    cmd.arg("--")
        .arg(addr)
        .env_clear()
        .env("POSTERN_HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    postern_common::sys::with_default_signals(&mut cmd);
    let mut child = cmd.spawn().temp(format!("unable to run {shown}"))?;
    let status = match postern_common::deadline::wait_child(&mut child, Instant::now() + limit) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            return Err(Error::temp(format!(
                "{shown} gave no answer within {} seconds",
                limit.as_secs()
            )));
        }
        Err(e) => return Err(Error::io(format!("unable to wait for {shown}"), &e)),
    };
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(MAX_ANSWER).read_to_string(&mut out);
    }
    match status.code() {
        Some(0) => parse_answer(&out).ok_or_else(|| {
            Error::temp(format!(
                "{shown} answered {}",
                postern_common::logline::printable(out.trim_end())
            ))
        }),
        Some(c) => Err(Error::temp(format!("{shown} exited {c}"))),
        None => Err(Error::temp(format!("{shown} crashed"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_lines() {
        let a = parse_answer("fail no 127.0.0.1 (127.0.0.1) said: 550 5.1.1 no\n").unwrap();
        assert_eq!(a.outcome, Outcome::Fail);
        assert!(!a.cached);
        assert_eq!(a.text, "127.0.0.1 (127.0.0.1) said: 550 5.1.1 no");
        let a = parse_answer("pass yes \n").unwrap();
        assert_eq!(
            (a.outcome, a.cached, a.text.as_str()),
            (Outcome::Pass, true, "")
        );
        for bad in ["", "pass yes", "ok yes x\n", "pass maybe x\n", "pass\n"] {
            assert!(parse_answer(bad).is_none(), "{bad:?}");
        }
    }
}
