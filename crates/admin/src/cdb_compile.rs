//! `posternctl cdb`: compile every list an admin edits by hand into the form the daemons
//! read — the access rules (`tcp.smtp`, `tcp.pop3`, `tcp.submission` → `.cdb`, the
//! format ucspi-tcp's tcpserver reads too), the user and alias database (`users`,
//! `aliases`, `domains` → `users.cdb`, `aliases.cdb`, `recipients.cdb`) and the content
//! rules (`filter.rules` checked → `filter.rules.active`).
//!
//! Each compile is atomic (temp file, fsync, rename): a source with a bad line is named
//! with its line number and leaves the old compiled file in force. The others are still
//! compiled, so one typo does not hold up every other change.

use postern_common::control::Control;
use postern_common::{atomic, Error, Result, ResultExt};
use std::ffi::OsString;
use std::fs::File;
use std::path::Path;

/// The access-rule sources, each compiled to `NAME.cdb`.
pub const RULE_FILES: &[&str] = &["tcp.smtp", "tcp.pop3", "tcp.submission"];

/// Compile `control/NAME` to `control/NAME.cdb` (via `NAME.tmp`).
pub fn compile_rules(control: &Control, name: &str) -> Result<()> {
    let source = control.path(name);
    let mut input = File::open(&source).temp(format!("unable to read control/{name}"))?;
    let args: Vec<OsString> = vec![
        control.path(&format!("{name}.cdb")).into(),
        control.path(&format!("{name}.tmp")).into(),
    ];
    postern_ucspi::tcprules::run(&args, &mut input)
        .map_err(|e| e.context(format!("control/{name}")))
}

/// Check `filter.rules` and install it as `filter.rules.active`, which postern-scan reads.
pub fn activate_filter_rules(control: &Control) -> Result<()> {
    let Some(text) = control.read("filter.rules")? else {
        return Ok(());
    };
    postern_filter::scan::rules::parse(&text)?;
    atomic::write_atomic(&control.path("filter.rules.active"), text.as_bytes(), 0o644)
        .temp("unable to write control/filter.rules.active")
}

/// What `cdb` did.
#[derive(Debug, Default)]
pub struct Report {
    pub compiled: Vec<String>,
    pub failed: Vec<Error>,
}

/// Compile everything (or, with `only_missing`, only what has no compiled form yet —
/// what `init` does, so it never replaces an admin's compiled files).
pub fn compile_all(home: &Path, only_missing: bool) -> Report {
    let control = Control::for_home(home);
    let mut report = Report::default();
    let missing = |name: &str| !control.path(name).exists();
    for name in RULE_FILES {
        if control.path(name).exists() && (!only_missing || missing(&format!("{name}.cdb"))) {
            match compile_rules(&control, name) {
                Ok(()) => report.compiled.push(format!("{name}.cdb")),
                Err(e) => report.failed.push(e),
            }
        }
    }
    if !only_missing || missing("users.cdb") {
        match postern_mailstore::compile_all(home) {
            Ok(()) => report
                .compiled
                .push("users.cdb aliases.cdb recipients.cdb".into()),
            Err(e) => report.failed.push(e),
        }
    }
    // The recipients behind a gateway; a cdb whose source is gone is removed.
    let relay = postern_mailstore::relayrecipients::SOURCE;
    let relay_cdb = postern_mailstore::relayrecipients::CDB;
    if (control.path(relay).exists() || control.path(relay_cdb).exists())
        && (!only_missing || missing(relay_cdb))
    {
        match postern_mailstore::relayrecipients::compile(home) {
            Ok(true) => report.compiled.push(relay_cdb.into()),
            Ok(false) => {}
            Err(e) => report.failed.push(e),
        }
    }
    if control.path("filter.rules").exists() && (!only_missing || missing("filter.rules.active")) {
        match activate_filter_rules(&control) {
            Ok(()) => report.compiled.push("filter.rules.active".into()),
            Err(e) => report.failed.push(e),
        }
    }
    report
}

/// `posternctl cdb`: compile, print what was done and every failure; fail if any did.
pub fn run(home: &Path) -> Result<()> {
    let report = compile_all(home, false);
    for name in &report.compiled {
        println!("posternctl: compiled {name}");
    }
    for e in &report.failed {
        eprintln!("posternctl: error: {}", e.msg);
    }
    match report.failed.len() {
        0 => Ok(()),
        n => Err(Error::perm(format!(
            "{n} file(s) not compiled; the old compiled versions stay in force"
        ))),
    }
}
