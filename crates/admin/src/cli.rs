//! posternctl's command line. clap does the parsing; a mistake becomes one
//! `posternctl: usage: …` line and exit 100, not clap's exit 2.

use crate::init::InitOptions;
use clap::{Parser, Subcommand};
use postern_common::{Error, Result};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "posternctl",
    about = "Set up and control a postern instance.",
    disable_version_flag = true
)]
struct Cli {
    /// The instance directory (default: $POSTERN_HOME, else /var/postern).
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Create an instance, or add what is missing to one (never overwrites).
    Init {
        /// The first hosted domain: written to control/rcpthosts.
        #[arg(long)]
        domain: Option<String>,
        /// Where the postern binaries are (default: posternctl's own directory).
        #[arg(long)]
        bin: Option<PathBuf>,
        /// Address the services listen on (0 = every IPv4 address).
        #[arg(long, default_value = "0")]
        listen: String,
        /// SMTP port.
        #[arg(long, default_value_t = 25)]
        smtp_port: u16,
        /// Submission port (SMTP with AUTH required).
        #[arg(long, default_value_t = 587)]
        submission_port: u16,
        /// POP3 port.
        #[arg(long, default_value_t = 110)]
        pop3_port: u16,
        /// Make the submissions service (SMTP submission over implicit TLS, usually 465)
        /// listening on this port.
        #[arg(long)]
        submissions_port: Option<u16>,
        /// Make the pop3s service (POP3 over implicit TLS, usually 995) listening on
        /// this port.
        #[arg(long)]
        pop3s_port: Option<u16>,
    },
    /// Compile the access rules, the user database and the filter rules (atomically; a
    /// bad line is named and the old compiled file stays in force).
    Cdb,
    /// Start services (svc -u); all of them without names.
    Start { services: Vec<String> },
    /// Stop services (svc -d); their loggers keep running to record the last lines.
    Stop { services: Vec<String> },
    /// Restart services (svc -t: TERM, and supervise starts them again).
    Restart { services: Vec<String> },
    /// Pause services (svc -p: STOP).
    Pause { services: Vec<String> },
    /// Continue paused services (svc -c: CONT).
    Cont { services: Vec<String> },
    /// Show every service and logger (svstat).
    Stat { services: Vec<String> },
    /// Retry every queued message now (svc -a on the send service).
    Doqueue,
    /// Make the delivery service reread its control files (svc -h on send).
    Reload,
    /// Show the queue: postern-qstat's counts, then postern-qread's listing.
    Queue,
    /// Summarise the logs: mail in and out, rejections, top talkers, queue size.
    Report {
        /// Only log lines from this time on: YYYY-MM-DD[ HH:MM[:SS]] (local) or 30m, 24h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// Also write the report as one self-contained HTML page with charts.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Keep watching the logs and print a one-line summary every few seconds.
        #[arg(long)]
        follow: bool,
        /// Seconds between --follow lines (default 5).
        #[arg(long)]
        interval: Option<u64>,
        /// Write the counts in the Prometheus text format to FILE (atomically, for
        /// node_exporter's textfile collector) instead of printing a report.
        #[arg(long, value_name = "FILE")]
        metrics: Option<PathBuf>,
    },
    /// Parse every control file and rules file and name each bad line (nothing is
    /// written): run it before `cdb`.
    Check,
    /// The security checklist: every item PASS, WARN or FAIL, with the fix.
    Audit {
        /// Accept the instance as it is: write the checksums of the control files, run
        /// scripts and binaries to control/.audit-checksums (and audit nothing).
        #[arg(long)]
        record: bool,
        /// The SMTP service to probe as an outside client (default: the address in
        /// service/smtpd/run).
        #[arg(long, value_name = "IP:PORT")]
        smtp: Option<String>,
        /// Days an access rule may go unmatched in the logs before it is called stale.
        #[arg(long, value_name = "DAYS", default_value_t = crate::audit::DEFAULT_STALE_DAYS)]
        stale_days: u64,
    },
    /// The TLS certificate: `cert install CERT KEY` puts a new or renewed one into
    /// control/tls/ atomically (an ACME client's deploy hook runs it).
    Cert {
        #[command(subcommand)]
        action: CertAction,
    },
    /// Work with the messages postern-scan refused and kept: list, show, release,
    /// delete, expire.
    Quarantine {
        #[command(subcommand)]
        action: crate::quarantine::Action,
    },
    /// DKIM keys for outgoing mail: new, list, record, use, remove.
    Dkim {
        #[command(subcommand)]
        action: crate::dkim::Action,
    },
}

#[derive(Subcommand, Debug)]
enum CertAction {
    /// Check CERT (a PEM chain, leaf first) and KEY as postern-tlsd would, install them
    /// as control/tls/cert.pem (0644) and key.pem (0600), and restart the TLS services if
    /// there was no certificate before.
    Install { cert: PathBuf, key: PathBuf },
}

/// A parsed command.
#[derive(Debug)]
pub enum Command {
    Init(InitOptions),
    /// Compile the hand-edited lists.
    Cdb {
        home: PathBuf,
    },
    /// `postern-svc -FLAGS` on some or all services.
    Svc {
        home: PathBuf,
        flags: &'static str,
        services: Vec<String>,
    },
    Stat {
        home: PathBuf,
        services: Vec<String>,
    },
    /// Show the queue.
    Queue {
        home: PathBuf,
    },
    /// Signal the send service.
    Send {
        home: PathBuf,
        flag: &'static str,
    },
    /// `posternctl report`.
    Report(crate::report::Options),
    /// `posternctl check`.
    Check {
        home: PathBuf,
    },
    /// `posternctl audit`.
    Audit(crate::audit::Options),
    /// `posternctl cert install`.
    CertInstall {
        home: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
    /// `posternctl quarantine`.
    Quarantine {
        home: PathBuf,
        action: crate::quarantine::Action,
    },
    /// `posternctl dkim`.
    Dkim {
        home: PathBuf,
        action: crate::dkim::Action,
    },
    /// Help was asked for and has been printed.
    Printed,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            let _ = e.print();
            return Ok(Command::Printed);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return Err(Error::usage(
                "posternctl COMMAND [options] (see posternctl help)",
            ));
        }
        Err(e) => return Err(Error::usage(one_line(&e.to_string()))),
    };
    let home = cli.home.unwrap_or_else(postern_common::home::postern_home);
    let svc = |flags, services| Command::Svc {
        home: home.clone(),
        flags,
        services,
    };
    Ok(match cli.command {
        Sub::Init {
            domain,
            bin,
            listen,
            smtp_port,
            submission_port,
            pop3_port,
            submissions_port,
            pop3s_port,
        } => Command::Init(InitOptions {
            home: home.clone(),
            domain,
            bin_source: bin.or_else(postern_common::sibling::own_dir),
            listen,
            ports: crate::init::Ports {
                smtp: smtp_port,
                submission: submission_port,
                pop3: pop3_port,
                submissions: submissions_port,
                pop3s: pop3s_port,
            },
        }),
        Sub::Cdb => Command::Cdb { home },
        Sub::Start { services } => svc("u", services),
        Sub::Stop { services } => svc("d", services),
        Sub::Restart { services } => svc("t", services),
        Sub::Pause { services } => svc("p", services),
        Sub::Cont { services } => svc("c", services),
        Sub::Stat { services } => Command::Stat { home, services },
        Sub::Doqueue => Command::Send { home, flag: "a" },
        Sub::Reload => Command::Send { home, flag: "h" },
        Sub::Queue => Command::Queue { home },
        Sub::Report {
            since,
            html,
            follow,
            interval,
            metrics,
        } => Command::Report(crate::report::Options::new(
            home, since, html, follow, interval, metrics,
        )?),
        Sub::Check => Command::Check { home },
        Sub::Audit {
            record,
            smtp,
            stale_days,
        } => Command::Audit(crate::audit::Options::new(home, record, smtp, stale_days)?),
        Sub::Cert {
            action: CertAction::Install { cert, key },
        } => Command::CertInstall { home, cert, key },
        Sub::Quarantine { action } => Command::Quarantine { home, action },
        Sub::Dkim { action } => Command::Dkim { home, action },
    })
}

/// clap's first line, without its `error: ` prefix, plus where to look for help.
fn one_line(text: &str) -> String {
    let first = text
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ");
    format!("{first} (see posternctl help)")
}
