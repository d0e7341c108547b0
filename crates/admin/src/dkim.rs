//! `posternctl dkim`: the DKIM keys postern-remote signs with (docs/posternctl.md
//! "dkim"). The keys and their layout are [`postern_auth::dkim::keys`]'s; this module
//! makes, lists, switches and removes them, and prints the TXT record to publish.
//!
//! As root, key files and directories go to the account postern-remote runs as (see
//! [`signer`]); elsewhere they stay the caller's, the account a single-user instance
//! runs everything as.

use postern_auth::dkim::keys::{self, Key, KeyType, Owner};
use postern_auth::dkim::record;
use postern_common::control::Control;
use postern_common::{Error, Result};
use std::io::Write;
use std::path::Path;

/// What `posternctl dkim` can be asked.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Make a key for DOMAIN and print the DNS TXT record that publishes it. The first
    /// key of a domain signs at once; a later one waits for `dkim use` (publish first).
    New {
        domain: String,
        /// The selector (default: s and today's date, e.g. s20261207).
        #[arg(long)]
        selector: Option<String>,
        /// rsa (2048 bits, the default) or ed25519.
        #[arg(long = "type", value_name = "TYPE", default_value = "rsa")]
        kind: String,
    },
    /// Every key: domain, selector, type, whether it signs, whether DNS publishes it.
    List,
    /// Print the DNS TXT record of a key again.
    Record { domain: String, selector: String },
    /// Make SELECTOR the key that signs DOMAIN's mail (the old one stays until removed).
    Use { domain: String, selector: String },
    /// Remove a key that no longer signs.
    Remove { domain: String, selector: String },
}

/// `posternctl dkim ACTION`.
pub fn run(home: &Path, action: Action) -> Result<()> {
    let control = Control::for_home(home);
    if !control.dir().is_dir() {
        return Err(Error::perm(format!(
            "no instance at {}: {} is not a directory",
            home.display(),
            control.dir().display()
        )));
    }
    let mut out = std::io::stdout().lock();
    let perm = Error::perm;
    match action {
        Action::New {
            domain,
            selector,
            kind,
        } => {
            let domain = domain_arg(&domain)?;
            let kind = KeyType::parse(&kind)
                .ok_or_else(|| perm(format!("--type {kind}: expected rsa or ed25519")))?;
            let selector = match selector {
                Some(s) => s.to_ascii_lowercase(),
                None => format!("s{}", chrono::Utc::now().format("%Y%m%d")),
            };
            if !keys::valid_selector(&selector) {
                return Err(perm(format!(
                    "{selector}: a selector is letters, digits, - and _ in dot-separated labels"
                )));
            }
            if keys::key_path(&control, &domain, &selector).exists() {
                return Err(perm(format!(
                    "{domain} already has a key {selector}: choose another with --selector"
                )));
            }
            let owner = signer(&control)?;
            let key = Key::generate(&domain, &selector, kind).map_err(Error::temp)?;
            let path = keys::save(&control, &key, owner).map_err(Error::temp)?;
            let line = record::zone_line(&key).map_err(Error::temp)?;
            let signs = keys::active(&control, &domain).map_err(Error::temp)?;
            let note = match signs {
                None => {
                    keys::set_active(&control, &domain, &selector, owner).map_err(Error::temp)?;
                    format!(
                        "it signs {domain}'s mail from now on: publish this record in {domain}'s zone"
                    )
                }
                Some(old) => format!(
                    "{old} still signs: publish this record in {domain}'s zone, wait for it to \
                     reach the secondaries, then `posternctl dkim use {domain} {selector}`; \
                     remove {old} a few days later"
                ),
            };
            eprintln!(
                "posternctl: made {} ({} key); {note}:",
                path.display(),
                kind.name()
            );
            writeln!(out, "{line}").map_err(write_err)
        }
        Action::List => {
            let dns = postern_dns::Dns::from_control(&control)?;
            let domains = keys::domains(&control).map_err(Error::temp)?;
            if domains.is_empty() {
                eprintln!("posternctl: no DKIM keys (posternctl dkim new DOMAIN makes one)");
            }
            for domain in domains {
                let signs = keys::active(&control, &domain).map_err(Error::temp)?;
                for selector in keys::selectors(&control, &domain).map_err(Error::temp)? {
                    let role = if signs.as_deref() == Some(selector.as_str()) {
                        "signing"
                    } else {
                        "-"
                    };
                    let (kind, dns_state) = match keys::load(&control, &domain, &selector) {
                        Ok(key) => (
                            key.kind.name(),
                            record::published(&dns, &key)
                                .map(|p| p.describe())
                                .unwrap_or_else(|e| e),
                        ),
                        Err(e) => ("?", e),
                    };
                    writeln!(out, "{domain} {selector} {kind} {role} {dns_state}")
                        .map_err(write_err)?;
                }
            }
            Ok(())
        }
        Action::Record { domain, selector } => {
            let key = keys::load(&control, &domain_arg(&domain)?, &selector).map_err(perm)?;
            writeln!(out, "{}", record::zone_line(&key).map_err(Error::temp)?).map_err(write_err)
        }
        Action::Use { domain, selector } => {
            let domain = domain_arg(&domain)?;
            // The key must be there and usable before it signs anything.
            keys::load(&control, &domain, &selector).map_err(perm)?;
            keys::set_active(&control, &domain, &selector, signer(&control)?)
                .map_err(Error::temp)?;
            writeln!(out, "posternctl: {selector} signs {domain}'s mail").map_err(write_err)
        }
        Action::Remove { domain, selector } => {
            keys::remove(&control, &domain_arg(&domain)?, &selector).map_err(perm)?;
            writeln!(out, "posternctl: removed {domain}'s key {selector}").map_err(write_err)
        }
    }
}

fn write_err(e: std::io::Error) -> Error {
    Error::temp(format!("unable to write: {e}"))
}

fn domain_arg(d: &str) -> Result<String> {
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    if keys::valid_domain(&d) {
        Ok(d)
    } else {
        Err(Error::perm(format!("{d}: not a domain name")))
    }
}

/// The owner of new key files: as root, the account postern-remote runs as — the first
/// that exists of `control/remoteuser` (alone, when set), `control/accounts`' `remote`
/// role, `postern-remote`, `nobody` (postern-send's rule when it runs as root; an
/// installed postern-remote is setuid to the `remote` account); otherwise the caller's.
fn signer(control: &Control) -> Result<Owner> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let names: Vec<String> = match control.value("remoteuser")? {
        Some(n) => vec![n],
        None => {
            let accounts = crate::init::accounts(control)?;
            let role = accounts
                .iter()
                .find(|(role, _)| *role == "remote")
                .map(|(_, n)| n.clone());
            role.into_iter()
                .chain(["postern-remote".to_string(), "nobody".to_string()])
                .collect()
        }
    };
    match names
        .iter()
        .find_map(|n| nix::unistd::User::from_name(n).ok().flatten())
    {
        Some(u) => {
            if u.name != names[0] {
                eprintln!(
                    "posternctl: no account {}: the key is {}'s, the account postern-remote \
                     runs as here",
                    names[0], u.name
                );
            }
            Ok(Some((u.uid, u.gid)))
        }
        None => Err(Error::perm(format!(
            "none of the accounts {} exists: postern-remote could not read the key",
            names.join(", ")
        ))),
    }
}
