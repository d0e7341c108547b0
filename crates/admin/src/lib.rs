//! posternctl: the admin's one command for an instance — qmailctl's successor.
//!
//! - [`cli`]: the command line (clap), turned into a [`cli::Command`].
//! - [`cdb_compile`]: `posternctl cdb`, compiling rules, users and filter rules.
//! - [`init`]: `posternctl init`, making or completing an instance.
//! - [`templates`]: the control defaults and service templates `init` installs.
//! - [`services`]: start/stop/stat and friends, through postern-svc and postern-svstat.
//! - [`report`]: `posternctl report`, the logs summarised as text, HTML or a live line.
//! - [`check`]: `posternctl check`, every control and rules file parsed, bad lines named.
//! - [`audit`]: `posternctl audit`, the security checklist (PASS / WARN / FAIL).
//! - [`cert`]: `posternctl cert install`, a new or renewed certificate put in place.
//! - [`quarantine`]: `posternctl quarantine`, the messages postern-scan refused and kept.
//! - [`dkim`]: `posternctl dkim`, the DKIM keys postern-remote signs with.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cdb_compile;
pub mod cert;
pub mod check;
pub mod cli;
pub mod dkim;
pub mod init;
pub mod quarantine;
pub mod report;
pub mod services;
pub mod templates;

use postern_common::Result;

/// posternctl's entry point.
pub fn main() -> Result<()> {
    match cli::parse(std::env::args_os())? {
        cli::Command::Init(opts) => {
            let outcome = init::init(&opts)?;
            for w in &outcome.warnings {
                postern_common::exit::warn("posternctl", w);
            }
            println!(
                "posternctl: instance {}: created {}, kept {} already present",
                opts.home.display(),
                outcome.created.len(),
                outcome.kept
            );
            Ok(())
        }
        cli::Command::Cdb { home } => cdb_compile::run(&home),
        cli::Command::Svc {
            home,
            flags,
            services,
        } => services::svc(&home, flags, services::Scope::Services, &services),
        cli::Command::Stat { home, services } => services::stat(&home, &services),
        cli::Command::Queue { home } => services::queue(&home),
        cli::Command::Send { home, flag } => services::signal_send(&home, flag),
        cli::Command::Report(opts) => report::run(&opts),
        cli::Command::Check { home } => check::run(&home),
        cli::Command::Audit(opts) => audit::run(&opts),
        cli::Command::CertInstall { home, cert, key } => cert::run(&home, &cert, &key),
        cli::Command::Quarantine { home, action } => quarantine::run(&home, action),
        cli::Command::Dkim { home, action } => dkim::run(&home, action),
        cli::Command::Printed => Ok(()),
    }
}
