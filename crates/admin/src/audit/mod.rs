//! `posternctl audit`: the admin's security checklist ("is your mail server secure?"),
//! run against a live instance. Every item ends as PASS, WARN or FAIL with
//! one line of detail, and WARN and FAIL say how to fix it; any FAIL makes the command
//! exit 100.
//!
//! One submodule per group of checks:
//!
//! - [`relay`]: the open-relay probe (a real SMTP session as an outside client, the
//!   classic relay tricks) and the `tcp.smtp` rules that hand out `RELAYCLIENT`.
//! - [`banner`]: no software name or version in the greeting or the EHLO answer.
//! - [`recipients`]: `rcpthosts` and recipient validation at RCPT time.
//! - [`tls`]: passwords only under TLS; the certificate valid and not about to expire.
//! - [`dns`]: DNS blocklists configured and answering.
//! - [`mailauth`]: SPF, DKIM and DMARC published for each hosted domain.
//! - [`antivirus`]: engines reachable, signatures recent.
//! - [`files`]: modes and owners of control files, binaries, run scripts and secrets;
//!   the tripwire (`--record`, `control/.audit-checksums`).
//! - [`logs`]: logs being written; access rules that matched nothing for N days.
//! - [`queue`]: backlog and the age of the oldest message.
//! - [`quarantine`]: how many copies the quarantine keeps, and for how long.
//! - [`report`]: the PASS / WARN / FAIL lines.

pub mod antivirus;
pub mod banner;
pub mod dns;
pub mod files;
pub mod logs;
pub mod mailauth;
pub mod quarantine;
pub mod queue;
pub mod recipients;
pub mod relay;
pub mod report;
pub mod tls;

use postern_common::control::Control;
use postern_common::{Error, Result};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Days an access rule may go unmatched before it is stale (`--stale-days`).
pub const DEFAULT_STALE_DAYS: u64 = 30;
/// Largest `--stale-days`: ten years of logs is more than any instance keeps.
pub const MAX_STALE_DAYS: u64 = 3650;

/// How an item came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One checklist item's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub status: Status,
    /// The item, e.g. `open relay`.
    pub item: String,
    /// What was found.
    pub detail: String,
    /// What to do about a WARN or FAIL (empty for PASS).
    pub fix: String,
}

impl Finding {
    pub fn pass(item: &str, detail: impl Into<String>) -> Finding {
        Finding {
            status: Status::Pass,
            item: item.to_string(),
            detail: detail.into(),
            fix: String::new(),
        }
    }
    pub fn warn(item: &str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            status: Status::Warn,
            item: item.to_string(),
            detail: detail.into(),
            fix: fix.into(),
        }
    }
    pub fn fail(item: &str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            status: Status::Fail,
            item: item.to_string(),
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

/// Options of `audit`.
#[derive(Debug, Clone)]
pub struct Options {
    pub home: PathBuf,
    /// `--record`: write the checksums instead of auditing.
    pub record: bool,
    /// `--smtp HOST:PORT`: the service to probe.
    pub smtp: Option<SocketAddr>,
    pub stale_days: u64,
}

impl Options {
    pub fn new(
        home: PathBuf,
        record: bool,
        smtp: Option<String>,
        stale_days: u64,
    ) -> Result<Options> {
        let smtp = smtp
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    Error::usage(format!(
                        "--smtp needs IP:PORT, not {}",
                        postern_common::logline::printable(&s)
                    ))
                })
            })
            .transpose()?;
        if stale_days == 0 || stale_days > MAX_STALE_DAYS {
            return Err(Error::usage(format!(
                "--stale-days must be from 1 to {MAX_STALE_DAYS}"
            )));
        }
        if record && smtp.is_some() {
            return Err(Error::usage("--record does not go with --smtp"));
        }
        Ok(Options {
            home,
            record,
            smtp,
            stale_days,
        })
    }
}

/// Run every check, in the checklist's order.
pub fn audit(opts: &Options) -> Vec<Finding> {
    let home = &opts.home;
    let control = Control::for_home(home);
    let mut out = Vec::new();
    let session = relay::probe(home, &control, opts.smtp);
    out.extend(relay::findings(&control, &session));
    out.push(banner::finding(&control, &session));
    out.extend(recipients::findings(home, &control, &session));
    out.extend(tls::findings(home, &control));
    out.push(dns::finding(&control));
    out.extend(mailauth::findings(&control));
    out.push(antivirus::finding(&control));
    out.extend(files::findings(home));
    out.push(logs::written(home));
    out.push(queue::finding(home));
    out.push(quarantine::finding(home));
    out.push(logs::stale_rules(home, &control, opts.stale_days));
    out.push(files::integrity(home));
    out
}

/// `posternctl audit` (or `audit --record`).
pub fn run(opts: &Options) -> Result<()> {
    if !opts.home.join("control").is_dir() {
        return Err(Error::perm(format!(
            "no instance at {}: {} is not a directory",
            opts.home.display(),
            opts.home.join("control").display()
        )));
    }
    if opts.record {
        let n = files::record(&opts.home)?;
        println!(
            "posternctl: audit: recorded the checksums of {n} files in control/{}",
            files::CHECKSUMS
        );
        return Ok(());
    }
    let findings = audit(opts);
    let mut stdout = std::io::stdout().lock();
    report::print(&mut stdout, &findings)
        .map_err(|e| Error::io("unable to write the report", &e))?;
    let fails = findings.iter().filter(|f| f.status == Status::Fail).count();
    if fails > 0 {
        return Err(Error::perm(format!("audit: {fails} item(s) FAILed")));
    }
    Ok(())
}

/// The access rules of `control/NAME` as tcpserver sees them: the compiled cdb if there
/// is one (what is in force), else the source compiled in memory. `None` when neither
/// exists or the source does not compile.
pub fn rules(control: &Control, name: &str) -> Option<postern_common::cdb::Reader<[u8]>> {
    if let Ok(bytes) = std::fs::read(control.path(&format!("{name}.cdb"))) {
        return Some(postern_common::cdb::Reader::from_bytes(&bytes));
    }
    let source = std::fs::read(control.path(name)).ok()?;
    let records = postern_ucspi::rules::compile(&source).ok()?;
    let mut w = postern_common::cdb::Writer::new();
    for (k, v) in records {
        w.add(&k, &v).ok()?;
    }
    Some(postern_common::cdb::Reader::from_bytes(&w.finish().ok()?))
}

/// What the rules decide for a client at `ip` with no host name.
pub fn decide(
    reader: &postern_common::cdb::Reader<[u8]>,
    ip: std::net::IpAddr,
) -> Option<postern_ucspi::rules::Decision> {
    let client = postern_ucspi::rules::Client {
        ip,
        host: None,
        info: None,
    };
    postern_ucspi::rules::lookup(reader, &client).ok()
}

/// Whether a decision lets the client relay.
pub fn gives_relay(d: &postern_ucspi::rules::Decision) -> bool {
    !d.deny && d.env.iter().any(|(k, _)| k == "RELAYCLIENT")
}

/// A list of names for a detail line: the first few, then how many more.
pub fn list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}
