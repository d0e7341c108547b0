//! posternctl: the admin's one command for an instance — qmailctl's successor.
//!
//! - [`cli`]: the command line (clap), turned into a [`cli::Command`].
//! - [`init`]: `posternctl init`, making or completing an instance.
//! - [`templates`]: the control defaults and service templates `init` installs.
//! - [`services`]: start/stop/stat and friends, through postern-svc and postern-svstat.
#![forbid(unsafe_code)]

pub mod cli;
pub mod init;
pub mod services;
pub mod templates;

use postern_common::Result;

/// posternctl's entry point.
pub fn main() -> Result<()> {
    match cli::parse(std::env::args_os())? {
        cli::Command::Init(opts) => {
            let outcome = init::init(&opts)?;
            println!(
                "posternctl: instance {}: created {}, kept {} already present",
                opts.home.display(),
                outcome.created.len(),
                outcome.kept
            );
            Ok(())
        }
        cli::Command::Svc {
            home,
            flags,
            services,
        } => services::svc(&home, flags, services::Scope::Services, &services),
        cli::Command::Stat { home, services } => services::stat(&home, &services),
        cli::Command::Send { home, flag } => services::signal_send(&home, flag),
        cli::Command::Printed => Ok(()),
    }
}
