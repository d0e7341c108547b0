//! `posternctl init --home DIR [--domain D]`: make an instance, or complete
//! one. It only ever adds what is missing: an existing file or directory is left exactly
//! as the admin has it, so running it again (or after an upgrade) is always safe.
//!
//! Run by a normal user it makes a single-user instance owned by that user. Run by root
//! it makes the same tree owned by root, with run scripts that start every daemon under
//! its service account (named in `control/accounts`, see [`accounts`]);
//! `scripts/install` creates the accounts first and then hands parts of the tree to them
//! (docs/install.md).

use crate::templates::{self, Template};
use postern_common::control::{system_hostname, Control};
use postern_common::privilege;
use postern_common::{Error, Result, ResultExt};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The instance's directories and their modes.
pub const DIRECTORIES: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("control", 0o755),
    ("control/tls", 0o700),
    ("users", 0o711),
    ("quarantine", 0o700),
    ("quarantine/tmp", 0o700),
    ("quarantine/new", 0o700),
    ("quarantine/cur", 0o700),
    ("service", 0o755),
    ("log", 0o755),
];

/// What `init` did, for its report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub created: Vec<PathBuf>,
    pub kept: usize,
    /// Things the admin should know (printed as `posternctl: warning: …`).
    pub warnings: Vec<String>,
}

/// The ports the services listen on. The implicit-TLS services (`submissions`,
/// `pop3s`) are made only when their port is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub smtp: u16,
    pub submission: u16,
    pub pop3: u16,
    pub submissions: Option<u16>,
    pub pop3s: Option<u16>,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            smtp: 25,
            submission: 587,
            pop3: 110,
            submissions: None,
            pop3s: None,
        }
    }
}

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub home: PathBuf,
    pub domain: Option<String>,
    /// Where the postern binaries are; `bin/` gets a symlink to each one found there
    /// unless it is `bin/` itself.
    pub bin_source: Option<PathBuf>,
    /// The address services listen on (`0` = every IPv4 address).
    pub listen: String,
    pub ports: Ports,
}

/// The account the network daemons run as in a root install (made by scripts/install),
/// when `control/accounts` does not name another.
pub const NET_ACCOUNT: &str = "postern-net";
/// The account the loggers run as in a root install (same default rule).
pub const LOG_ACCOUNT: &str = "postern-log";
/// The account postern-send runs as in a root install.
pub const SEND_ACCOUNT: &str = "postern-send";
/// The account postern-ratelimit runs as in a root install.
pub const RATELIMIT_ACCOUNT: &str = "postern-ratelimit";
/// `control/accounts`: `ROLE ACCOUNT` lines naming the service accounts of a root
/// install (written by scripts/install, e.g. for `--prefix-accounts`).
pub const ACCOUNTS_FILE: &str = "accounts";
/// The roles of a root install, one account each (docs/install.md). A role missing
/// from `control/accounts` is `postern-ROLE`.
pub const ROLES: &[&str] = &["net", "queue", "send", "remote", "mail", "log", "ratelimit"];
/// The roles whose accounts the run scripts name, in the order `init` uses them.
pub const SERVICE_ROLES: &[&str] = &["net", "log", "send", "ratelimit"];
/// Longest account name accepted in `control/accounts` (useradd's limit).
pub const MAX_ACCOUNT_NAME: usize = 32;

/// The service account of each role, from `control/accounts` (missing file or role:
/// `postern-ROLE`). A bad line is a permanent error naming `control/accounts:LINE`.
pub fn accounts(control: &Control) -> Result<Vec<(&'static str, String)>> {
    let mut out: Vec<(&'static str, String)> =
        ROLES.iter().map(|r| (*r, format!("postern-{r}"))).collect();
    for line in control.list(ACCOUNTS_FILE)? {
        let bad = |why: &str| {
            Error::perm(format!(
                "control/{ACCOUNTS_FILE}:{}: {why}: {}",
                line.number,
                postern_common::logline::printable(&line.text)
            ))
        };
        let mut words = line.text.split_whitespace();
        let (Some(role), Some(name), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected ROLE ACCOUNT"));
        };
        let Some(slot) = out.iter_mut().find(|(r, _)| *r == role) else {
            return Err(bad("unknown role"));
        };
        let name_ok = !name.is_empty()
            && name.len() <= MAX_ACCOUNT_NAME
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(bad("not an account name"));
        }
        slot.1 = name.to_string();
    }
    Ok(out)
}

/// The account of `role` in `accounts`.
fn account_of<'a>(accounts: &'a [(&'static str, String)], role: &str) -> &'a str {
    accounts
        .iter()
        .find(|(r, _)| *r == role)
        .map_or("", |(_, n)| n.as_str())
}

/// A domain name as an admin may type it: letters, digits, `-` and `.`, no leading dot.
pub fn check_domain(domain: &str) -> Result<String> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && !d.starts_with('.')
        && !d.contains("..")
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(d)
    } else {
        Err(Error::usage(format!(
            "not a domain name: {}",
            postern_common::logline::printable(domain)
        )))
    }
}

pub fn init(opts: &InitOptions) -> Result<Outcome> {
    let home = absolute(&opts.home)?;
    let domain = opts.domain.as_deref().map(check_domain).transpose()?;
    let mut outcome = Outcome::default();
    make_dir(&home, 0o755, &mut outcome)?;
    for (dir, mode) in DIRECTORIES {
        make_dir(&home.join(dir), *mode, &mut outcome)?;
    }
    let home_text = home
        .to_str()
        .ok_or_else(|| Error::usage("the instance path must be UTF-8"))?;
    let listen_ok = !opts.listen.is_empty()
        && opts
            .listen
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':');
    if !listen_ok {
        return Err(Error::usage(format!(
            "not an address to listen on: {}",
            postern_common::logline::printable(&opts.listen)
        )));
    }
    let mut values = templates::Values {
        home: home_text.to_string(),
        domain: domain.clone().unwrap_or_else(|| "localhost".to_string()),
        listen: opts.listen.clone(),
        smtp_port: opts.ports.smtp,
        submission_port: opts.ports.submission,
        pop3_port: opts.ports.pop3,
        submissions_port: opts.ports.submissions.unwrap_or(465),
        pop3s_port: opts.ports.pop3s.unwrap_or(995),
        net_account: String::new(),
        log_runas: String::new(),
        send_runas: String::new(),
        ratelimit_runas: String::new(),
    };
    for t in templates::CONTROL {
        make_file(
            &home,
            t,
            &templates::render(t.contents, &values),
            &mut outcome,
        )?;
    }
    // Daemons never run as root: a root instance needs the service accounts.
    let services = if privilege::is_root() {
        let names = accounts(&Control::for_home(&home))?;
        let missing: Vec<&str> = SERVICE_ROLES
            .iter()
            .map(|r| account_of(&names, r))
            .filter(|a| privilege::lookup_account(a).is_err())
            .collect();
        if missing.is_empty() {
            let setuidgid = |role: &str| {
                format!(
                    "{home_text}/bin/postern-setuidgid {}",
                    account_of(&names, role)
                )
            };
            // tlsd reads the key as root, then becomes the network account (or,
            // without a certificate, the listener does).
            values.net_account = account_of(&names, "net").to_string();
            values.log_runas = setuidgid("log");
            values.send_runas = setuidgid("send");
            // postern-ratelimit writes its lists in an instance of its own
            // (HOME/ratelimit, whose control/ links to ours): it may not write control/.
            values.ratelimit_runas = format!(
                "env POSTERN_HOME={home_text}/ratelimit {}",
                setuidgid("ratelimit")
            );
            true
        } else {
            outcome.warnings.push(format!(
                "service directories not made: as root they need the accounts {} (scripts/install makes them)",
                missing.join(", ")
            ));
            false
        }
    } else {
        true
    };
    let mut chosen: Vec<Template> = templates::SERVICES.to_vec();
    if opts.ports.submissions.is_some() {
        chosen.extend_from_slice(templates::SUBMISSIONS);
    }
    if opts.ports.pop3s.is_some() {
        chosen.extend_from_slice(templates::POP3S);
    }
    if services {
        for t in &chosen {
            make_file(
                &home,
                t,
                &templates::render(t.contents, &values),
                &mut outcome,
            )?;
        }
    }
    // Files whose default depends on this host or the domain.
    let me = Template {
        path: "control/me",
        contents: "",
        mode: 0o644,
    };
    make_file(
        &home,
        &me,
        &format!("{}\n", system_hostname()),
        &mut outcome,
    )?;
    if let Some(d) = &domain {
        let rcpthosts = Template {
            path: "control/rcpthosts",
            contents: "",
            mode: 0o644,
        };
        make_file(
            &home,
            &rcpthosts,
            &format!("# Domains anyone may send mail to.\n{d}\n"),
            &mut outcome,
        )?;
    }
    for t in chosen.iter().filter(|_| services) {
        if let Some(service_dir) = Path::new(t.path).parent() {
            let name = service_dir
                .strip_prefix("service")
                .ok()
                .and_then(|p| p.iter().next());
            if let (Some(name), false) = (name, service_dir.ends_with("log")) {
                make_dir(&home.join("log").join(name), 0o755, &mut outcome)?;
            }
        }
    }
    // An instance made before the submissions service existed has a ratelimit run
    // script that does not follow its log.
    let ratelimit_run = home.join("service/ratelimit/run");
    if services && opts.ports.submissions.is_some() {
        if let Ok(text) = fs::read_to_string(&ratelimit_run) {
            if !text.contains("log/submissions") {
                outcome.warnings.push(format!(
                    "{} does not follow log/submissions: add it to postern-ratelimit's log directories",
                    ratelimit_run.display()
                ));
            }
        }
    }
    if let Some(source) = &opts.bin_source {
        link_binaries(source, &home.join("bin"), &mut outcome)?;
    }
    // The queue's inside (directories, modes, the trigger FIFO), from its own code.
    let queue_made = postern_queue::layout::create(&home)?;
    outcome.kept += postern_queue::layout::DIRECTORIES
        .len()
        .saturating_sub(queue_made.len());
    outcome.created.extend(queue_made);
    run_directories(&home, &mut outcome)?;
    // Compiled forms the daemons need, made only where missing (never replaced).
    let compiled = crate::cdb_compile::compile_all(&home, true);
    outcome.created.extend(
        compiled
            .compiled
            .iter()
            .map(|n| home.join("control").join(n)),
    );
    outcome
        .warnings
        .extend(compiled.failed.into_iter().map(|e| e.msg));
    Ok(outcome)
}

/// The network account's working directories under `run/` (0700 each): recipient
/// verification's answers (postern-verify), the clients postern-pregreet remembers and
/// smtpd's greylist — all three programs run as that account, so a root instance gives
/// the directories to it.
fn run_directories(home: &Path, outcome: &mut Outcome) -> Result<()> {
    let net_owner = if privilege::is_root() {
        let names = accounts(&Control::for_home(home))?;
        privilege::lookup_account(account_of(&names, "net"))
            .ok()
            .map(|a| (a.uid, a.gid))
    } else {
        None
    };
    let run_made = postern_mailstore::verifycache::Cache::prepare(home, net_owner)?;
    outcome.kept += 2 - run_made.len();
    outcome.created.extend(run_made);
    for dir in ["run/pregreet", "run/greylist"] {
        let dir = home.join(dir);
        if dir.is_dir() {
            outcome.kept += 1;
            continue;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .temp(format!("unable to create {}", dir.display()))?;
        if let Some((uid, gid)) = net_owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .temp(format!("unable to chown {}", dir.display()))?;
        }
        outcome.created.push(dir);
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().temp("unable to find the current directory")?;
    Ok(cwd.join(path))
}

fn make_dir(path: &Path, mode: u32, outcome: &mut Outcome) -> Result<()> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {
            // The umask may have taken bits away; the mode is part of the contract.
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .temp(format!("unable to chmod {}", path.display()))?;
            outcome.created.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if path.is_dir() {
                outcome.kept += 1;
                Ok(())
            } else {
                Err(Error::perm(format!(
                    "{} exists and is not a directory",
                    path.display()
                )))
            }
        }
        Err(e) => Err(Error::io(
            format!("unable to create {}", path.display()),
            &e,
        )),
    }
}

/// Create `home/t.path` with `contents` unless something is already there.
fn make_file(home: &Path, t: &Template, contents: &str, outcome: &mut Outcome) -> Result<()> {
    let path = home.join(t.path);
    if let Some(parent) = path.parent() {
        if !parent.is_dir() {
            let mode = if parent.ends_with("supervise") {
                0o700
            } else {
                0o755
            };
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(parent)
                .temp(format!("unable to create {}", parent.display()))?;
            outcome.created.push(parent.to_path_buf());
        }
    }
    // create_new: never replace an admin's file, even one created a moment ago.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(t.mode)
        .open(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            outcome.kept += 1;
            return Ok(());
        }
        Err(e) => {
            return Err(Error::io(
                format!("unable to create {}", path.display()),
                &e,
            ))
        }
    };
    file.write_all(contents.as_bytes())
        .temp(format!("unable to write {}", path.display()))?;
    file.sync_all()
        .temp(format!("unable to write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(t.mode))
        .temp(format!("unable to chmod {}", path.display()))?;
    outcome.created.push(path);
    Ok(())
}

/// Symlink every `postern-*` program (and `posternctl`) found in `source` into `bin`.
fn link_binaries(source: &Path, bin: &Path, outcome: &mut Outcome) -> Result<()> {
    let source = fs::canonicalize(source).temp(format!("unable to find {}", source.display()))?;
    if fs::canonicalize(bin).ok().as_deref() == Some(source.as_path()) {
        return Ok(());
    }
    let entries = fs::read_dir(&source).temp(format!("unable to read {}", source.display()))?;
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| {
            let n = n.to_string_lossy();
            (n.starts_with("postern-") || n == "posternctl") && !n.contains('.')
        })
        .collect();
    names.sort();
    for name in names {
        let target = source.join(&name);
        if !target.is_file() {
            continue;
        }
        let link = bin.join(&name);
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => outcome.created.push(link),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => outcome.kept += 1,
            Err(e) => return Err(Error::io(format!("unable to link {}", link.display()), &e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_come_from_control_accounts_else_postern_role() {
        let dir = postern_testkit::tempdir();
        let control = Control::at(dir.path().to_path_buf());
        let names = accounts(&control).unwrap();
        assert_eq!(account_of(&names, "net"), "postern-net");
        assert_eq!(names.len(), ROLES.len());
        fs::write(
            dir.path().join(ACCOUNTS_FILE),
            "# written by scripts/install\nnet t1-net\nmail t1_mail\n",
        )
        .unwrap();
        let names = accounts(&control).unwrap();
        assert_eq!(account_of(&names, "net"), "t1-net");
        assert_eq!(account_of(&names, "mail"), "t1_mail");
        assert_eq!(account_of(&names, "log"), "postern-log");
        for (bad, why) in [
            (
                "web t1-web\n",
                "control/accounts:1: unknown role: web t1-web",
            ),
            ("net\n", "control/accounts:1: expected ROLE ACCOUNT: net"),
            ("net a b\n", "control/accounts:1: expected ROLE ACCOUNT"),
            (
                "net Root\n",
                "control/accounts:1: not an account name: net Root",
            ),
            ("net -x\n", "control/accounts:1: not an account name"),
            ("net a/b\n", "control/accounts:1: not an account name"),
        ] {
            fs::write(dir.path().join(ACCOUNTS_FILE), bad).unwrap();
            let e = accounts(&control).unwrap_err();
            assert!(e.msg.starts_with(why), "{bad:?}: {}", e.msg);
        }
    }

    #[test]
    fn domains_are_checked() {
        assert_eq!(check_domain("Example.TEST.").unwrap(), "example.test");
        for bad in ["", ".x", "a..b", "a b", "a/b", "x\n"] {
            assert!(check_domain(bad).is_err(), "{bad:?}");
        }
    }
}
