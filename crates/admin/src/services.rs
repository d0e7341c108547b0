//! Service control for an instance, built on `postern-svc` and `postern-svstat` the way
//! qmailctl is built on svc and svstat: posternctl finds the service directories under
//! `$POSTERN_HOME/service/` and runs the supervision tools on them, so what it does is
//! exactly what an admin could type.

use postern_common::{Error, Result, ResultExt};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The service that delivers (signalled by `doqueue` and `reload`).
pub const SEND_SERVICE: &str = "send";

/// The service directories of the instance, sorted by name (dot-names skipped).
pub fn service_dirs(home: &Path) -> Result<Vec<PathBuf>> {
    let dir = home.join("service");
    let entries = fs::read_dir(&dir).temp(format!("unable to read {}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// A supervision program next to posternctl (the instance's `bin/` or the build
/// directory), else from `$PATH`.
pub fn tool(name: &str) -> PathBuf {
    postern_common::sibling::program(name)
}

/// Run `program args…`, passing its output through; its failure is ours.
fn run_tool(program: &str, args: &[OsString]) -> Result<()> {
    let status = Command::new(tool(program))
        .args(args)
        .status()
        .temp(format!("unable to run {program}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(100) => Err(Error::perm(format!("{program} failed"))),
        _ => Err(Error::temp(format!("{program} failed"))),
    }
}

/// Which directories a command acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The services themselves, not their loggers (so loggers record the last lines).
    Services,
    /// Services and their loggers.
    WithLogs,
}

fn targets(home: &Path, scope: Scope, only: &[String]) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    let dirs = service_dirs(home)?;
    for name in only {
        if !dirs.iter().any(|d| {
            d.file_name()
                .map(|n| n.to_string_lossy() == name.as_str())
                .unwrap_or(false)
        }) {
            return Err(Error::perm(format!(
                "no such service: {}",
                postern_common::logline::printable(name)
            )));
        }
    }
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        out.push(dir.clone().into_os_string());
        if scope == Scope::WithLogs && dir.join("log").is_dir() {
            out.push(dir.join("log").into_os_string());
        }
    }
    if out.is_empty() {
        return Err(Error::perm(format!(
            "no services in {}",
            home.join("service").display()
        )));
    }
    Ok(out)
}

/// `postern-svc -FLAGS` on the chosen services.
pub fn svc(home: &Path, flags: &str, scope: Scope, only: &[String]) -> Result<()> {
    let mut args = vec![OsString::from(format!("-{flags}"))];
    args.extend(targets(home, scope, only)?);
    run_tool("postern-svc", &args)
}

/// `postern-svstat` on every service and logger.
pub fn stat(home: &Path, only: &[String]) -> Result<()> {
    run_tool("postern-svstat", &targets(home, Scope::WithLogs, only)?)
}

/// `postern-qstat` then `postern-qread` on the instance's queue (qmailctl's `queue`).
pub fn queue(home: &Path) -> Result<()> {
    for program in ["postern-qstat", "postern-qread"] {
        let status = Command::new(tool(program))
            .env("POSTERN_HOME", home)
            .status()
            .temp(format!("unable to run {program}"))?;
        if !status.success() {
            return Err(Error::temp(format!("{program} failed")));
        }
    }
    Ok(())
}

/// Signal the delivery service (`a` = retry now, `h` = reread control files).
pub fn signal_send(home: &Path, flag: &str) -> Result<()> {
    let send = home.join("service").join(SEND_SERVICE);
    if !send.is_dir() {
        return Err(Error::perm(format!(
            "no delivery service: {} is missing",
            send.display()
        )));
    }
    run_tool(
        "postern-svc",
        &[OsString::from(format!("-{flag}")), send.into_os_string()],
    )
}
