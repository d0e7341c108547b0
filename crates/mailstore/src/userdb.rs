//! The user database: the flat files an admin edits (`control/domains`, `control/users`,
//! `control/aliases`, formats in docs/users-file.md), their compiled forms, and the
//! lookups the other programs make.
//!
//! Compiled files, each replaced atomically (temp, fsync, rename) and only after all
//! three sources parsed cleanly, so a bad line leaves every old cdb in force:
//!
//! | file | key | value | mode |
//! |---|---|---|---|
//! | `users.cdb` | `local@domain` | `hash\0quota\0dir\0` | 0600, owned by the mail owner (as root) |
//! | `aliases.cdb` | `local@domain` or `@domain` | `target\0target\0…` | 0644 |
//! | `recipients.cdb` | `domain`, `local@domain`, `@domain` | empty | 0644 |
//!
//! `recipients.cdb` holds no secrets, so the network-facing SMTP server can validate
//! recipients without being able to read password hashes.

use crate::address::{self, AliasKey};
use crate::owner;
use postern_common::cdb;
use postern_common::control::{Control, Line};
use postern_common::{Error, Result, ResultExt};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

pub const DOMAINS: &str = "domains";
pub const USERS: &str = "users";
pub const ALIASES: &str = "aliases";
pub const USERS_CDB: &str = "users.cdb";
pub const ALIASES_CDB: &str = "aliases.cdb";
pub const RECIPIENTS_CDB: &str = "recipients.cdb";
/// Taken (flock) by every writer of the flat files and the cdbs.
pub const LOCK: &str = "users.lock";

/// Most targets one alias may have.
pub const MAX_TARGETS: usize = 1000;
/// Longest stored password hash (a PHC string is about 100 bytes).
pub const MAX_HASH: usize = 512;
/// Longest mailbox directory path.
pub const MAX_DIR: usize = 1024;

/// A mailbox as the compiled database gives it to other programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `local@domain`, lower-case.
    pub address: String,
    /// PHC string (`$argon2id$…`), or a string starting with `!` for a disabled login.
    pub hash: String,
    /// Quota in bytes; `None` = unlimited.
    pub quota: Option<u64>,
    /// The user's directory (absolute): `HOME` for the user's programs.
    pub home: PathBuf,
    /// `home/Maildir`.
    pub maildir: PathBuf,
}

impl User {
    /// Whether logins are refused (hash starts with `!`); mail is still delivered.
    pub fn login_disabled(&self) -> bool {
        self.hash.starts_with('!') || self.hash.is_empty()
    }
}

/// One line of `control/users`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub line: usize,
    pub address: String,
    pub hash: String,
    pub quota: Option<u64>,
    /// Relative to `$POSTERN_HOME`.
    pub dir: String,
}

/// One line of `control/aliases`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasEntry {
    pub line: usize,
    pub key: AliasKey,
    pub targets: Vec<String>,
}

/// The three source files, parsed and checked against each other.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub domains: Vec<(usize, String)>,
    pub users: Vec<UserEntry>,
    pub aliases: Vec<AliasEntry>,
}

fn at(file: &str, line: usize, err: Error) -> Error {
    Error::perm(format!("control/{file}:{line}: {}", err.msg))
}

/// The default mailbox directory of `local@domain`, relative to the instance.
pub fn default_dir(address: &str) -> String {
    let (l, d) = address.rsplit_once('@').unwrap_or((address, ""));
    format!("users/{d}/{l}")
}

/// A mailbox directory from the users file: relative, no `..`, bounded.
fn check_dir(dir: &str) -> Result<String> {
    let p = Path::new(dir);
    let ok = !dir.is_empty()
        && dir.len() <= MAX_DIR
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        // Printable ASCII, and letters and digits beyond ASCII (a UTF-8 local part's
        // default directory): never a control, a space or an invisible character.
        && dir
            .chars()
            .all(|c| c.is_ascii_graphic() || (!c.is_ascii() && c.is_alphanumeric()));
    if ok {
        Ok(dir.trim_end_matches('/').to_string())
    } else {
        Err(Error::perm(format!(
            "bad mailbox directory \"{}\": must be relative to the instance, without '..'",
            postern_common::logline::printable(dir)
        )))
    }
}

/// Parse one users line: `address:hash:quota[:dir]`.
pub fn parse_user_line(text: &str) -> Result<(String, String, Option<u64>, String)> {
    let fields: Vec<&str> = text.split(':').collect();
    if fields.len() < 3 || fields.len() > 4 {
        return Err(Error::perm("expected address:hash:quota[:directory]"));
    }
    let address = address::normalise(fields[0].trim())?;
    let hash = fields[1].trim();
    if hash.len() > MAX_HASH || !hash.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::perm("bad password hash field"));
    }
    if !hash.starts_with('!') && !hash.starts_with("$argon2") {
        return Err(Error::perm(
            "password hash must be an argon2 PHC string ($argon2id$...) or start with '!'",
        ));
    }
    // Digits only (`+5` is not a quota), and every spelling of 0 (`00`) is no quota, as
    // `0` is: postern-user writes no quota as `0`.
    let q = fields[2].trim();
    let quota = match q.parse::<u64>() {
        _ if q.is_empty() => None,
        Ok(n) if q.bytes().all(|b| b.is_ascii_digit()) => (n > 0).then_some(n),
        _ => {
            return Err(Error::perm(format!(
                "bad quota \"{}\": not a whole number of bytes",
                postern_common::logline::printable(q)
            )))
        }
    };
    let dir = match fields.get(3).map(|d| d.trim()) {
        None | Some("") => default_dir(&address),
        Some(d) => check_dir(d)?,
    };
    Ok((address, hash.to_string(), quota, dir))
}

/// Parse one aliases line: `address: target, target` or `@domain: target`.
pub fn parse_alias_line(text: &str) -> Result<(AliasKey, Vec<String>)> {
    let (key, rest) = text
        .split_once(':')
        .ok_or_else(|| Error::perm("expected address: target, target"))?;
    let key = AliasKey::parse(key.trim())?;
    let mut targets = Vec::new();
    for t in rest.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let t = address::target(t)?;
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    if targets.is_empty() {
        return Err(Error::perm("an alias needs at least one target"));
    }
    if targets.len() > MAX_TARGETS {
        return Err(Error::perm(format!("more than {MAX_TARGETS} targets")));
    }
    Ok((key, targets))
}

impl Sources {
    /// Read and check the three flat files of the instance whose control dir is `control`.
    /// Errors are permanent and name `control/FILE:LINE`; an unreadable file is temporary.
    pub fn read(control: &Control) -> Result<Sources> {
        let domains = control.list(DOMAINS)?;
        let users = control.list(USERS)?;
        let aliases = control.list(ALIASES)?;
        Sources::parse(&domains, &users, &aliases)
    }

    /// Check parsed lines (exposed for unit tests).
    pub fn parse(domains: &[Line], users: &[Line], aliases: &[Line]) -> Result<Sources> {
        let mut s = Sources::default();
        let mut seen_domains = BTreeSet::new();
        for l in domains {
            let d = address::domain(&l.text).map_err(|e| at(DOMAINS, l.number, e))?;
            if !seen_domains.insert(d.clone()) {
                return Err(at(
                    DOMAINS,
                    l.number,
                    Error::perm(format!("duplicate domain {d}")),
                ));
            }
            s.domains.push((l.number, d));
        }
        let not_hosted = |d: &str| Error::perm(format!("domain {d} is not in control/domains"));
        let mut seen = BTreeMap::new();
        let mut dirs = BTreeSet::new();
        for l in users {
            let (address, hash, quota, dir) =
                parse_user_line(&l.text).map_err(|e| at(USERS, l.number, e))?;
            let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            if !seen_domains.contains(domain) {
                return Err(at(USERS, l.number, not_hosted(domain)));
            }
            if let Some(first) = seen.insert(address.clone(), l.number) {
                return Err(at(
                    USERS,
                    l.number,
                    Error::perm(format!(
                        "duplicate mailbox {address} (first on line {first})"
                    )),
                ));
            }
            if !dirs.insert(dir.clone()) {
                return Err(at(
                    USERS,
                    l.number,
                    Error::perm(format!("mailbox directory {dir} is used twice")),
                ));
            }
            s.users.push(UserEntry {
                line: l.number,
                address,
                hash,
                quota,
                dir,
            });
        }
        let mut seen_alias = BTreeMap::new();
        for l in aliases {
            let (key, targets) = parse_alias_line(&l.text).map_err(|e| at(ALIASES, l.number, e))?;
            if !seen_domains.contains(key.domain()) {
                return Err(at(ALIASES, l.number, not_hosted(key.domain())));
            }
            if seen.contains_key(&key.key()) {
                return Err(at(
                    ALIASES,
                    l.number,
                    Error::perm(format!(
                        "{} is already a mailbox in control/users",
                        key.key()
                    )),
                ));
            }
            if let Some(first) = seen_alias.insert(key.key(), l.number) {
                return Err(at(
                    ALIASES,
                    l.number,
                    Error::perm(format!(
                        "duplicate alias {} (first on line {first})",
                        key.key()
                    )),
                ));
            }
            s.aliases.push(AliasEntry {
                line: l.number,
                key,
                targets,
            });
        }
        Ok(s)
    }

    pub fn user(&self, address: &str) -> Option<&UserEntry> {
        self.users.iter().find(|u| u.address == address)
    }

    pub fn hosts(&self, domain: &str) -> bool {
        self.domains.iter().any(|(_, d)| d == domain)
    }
}

/// Encode a users.cdb value.
fn user_value(u: &UserEntry) -> Vec<u8> {
    let quota = u.quota.map(|q| q.to_string()).unwrap_or_default();
    format!("{}\0{}\0{}\0", u.hash, quota, u.dir).into_bytes()
}

/// Write a cdb atomically with `mode`, and (as root) group `gid`.
pub(crate) fn write_cdb(
    path: &Path,
    records: &[(Vec<u8>, Vec<u8>)],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("cdb")
        .to_string();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    let what = format!("unable to write control/{name}");
    let _ = fs::remove_file(&tmp);
    let result = (|| -> io::Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        let mut writer = cdb::Writer::new();
        for (k, v) in records {
            writer.add(k, v)?;
        }
        (&file).write_all(&writer.finish()?)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        postern_common::atomic::fsync_dir(&postern_common::atomic::parent_dir(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.temp(what)
}

/// Compile checked sources into the three cdbs of `control`.
pub fn compile(control: &Control, sources: &Sources) -> Result<()> {
    let users: Vec<_> = sources
        .users
        .iter()
        .map(|u| (u.address.clone().into_bytes(), user_value(u)))
        .collect();
    let aliases: Vec<_> = sources
        .aliases
        .iter()
        .map(|a| {
            let mut v = Vec::new();
            for t in &a.targets {
                v.extend_from_slice(t.as_bytes());
                v.push(0);
            }
            (a.key.key().into_bytes(), v)
        })
        .collect();
    let mut recipients: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    recipients.extend(
        sources
            .domains
            .iter()
            .map(|(_, d)| (d.clone().into_bytes(), Vec::new())),
    );
    recipients.extend(users.iter().map(|(k, _)| (k.clone(), Vec::new())));
    recipients.extend(aliases.iter().map(|(k, _)| (k.clone(), Vec::new())));
    // The hashes: readable by the mailbox owner (postern-checkpassword) only.
    let owner = owner::database_owner(control)?;
    write_cdb(&control.path(USERS_CDB), &users, 0o600, owner)?;
    write_cdb(&control.path(ALIASES_CDB), &aliases, 0o644, None)?;
    write_cdb(&control.path(RECIPIENTS_CDB), &recipients, 0o644, None)
}

/// Take the database lock (`control/users.lock`) until the returned guard is dropped.
pub fn lock(control: &Control) -> Result<postern_common::lock::Lock> {
    let file = postern_common::lock::open(&control.path(LOCK), 0o600)
        .temp("unable to open control/users.lock")?;
    postern_common::lock::Lock::wait(file).temp("unable to lock control/users.lock")
}

/// Recompile `users.cdb`, `aliases.cdb` and `recipients.cdb` from the flat files of the
/// instance at `home`. A bad line is a permanent error naming it, and every old cdb
/// stays in force. This is what `posternctl cdb` calls.
pub fn compile_all(home: &Path) -> Result<()> {
    let control = Control::for_home(home);
    let _lock = lock(&control)?;
    let sources = Sources::read(&control)?;
    compile(&control, &sources)
}

/// Size of a cdb's header (256 hash table pointers), and of a cdb with no records.
const CDB_HEADER: usize = 2048;
/// Shorter than this (the header, one record's lengths and one table slot) a file holds
/// no record, so it must be a cdb without records to be a cdb at all.
const CDB_MIN_RECORDS: u64 = 2048 + 8 + 8;

/// An open cdb. A valid cdb with no records — every hash table empty, the 2048-byte file
/// this module, tinycdb's `cdb -c` and `cdbmake` write for no records — finds nothing;
/// a shorter file, or one too short for a record whose tables are not empty, is a
/// temporary error, as is a missing file. The checks and the lookups read the same open
/// file, so an atomic replacement in between cannot mislead them.
pub(crate) fn open_cdb(control: &Control, name: &str) -> Result<cdb::Reader<fs::File>> {
    use std::io::Read;
    let path = control.path(name);
    let what = format!("unable to open control/{name}");
    let file = fs::File::open(&path).temp(&what)?;
    let mut head = Vec::with_capacity(CDB_MIN_RECORDS as usize);
    (&file)
        .take(CDB_MIN_RECORDS)
        .read_to_end(&mut head)
        .temp(format!("unable to read control/{name}"))?;
    if (head.len() as u64) < CDB_MIN_RECORDS {
        let empty_tables = head.len() >= CDB_HEADER
            && head[..CDB_HEADER]
                .chunks_exact(8)
                .all(|slot| slot[4..8] == [0, 0, 0, 0]);
        if !empty_tables {
            return Err(Error::temp(format!(
                "{what}: not a cdb file ({} bytes)",
                head.len()
            )));
        }
    }
    Ok(cdb::Reader::from_file(file))
}

pub(crate) fn get(db: &cdb::Reader<fs::File>, name: &str, key: &str) -> Result<Option<Vec<u8>>> {
    db.find(key.as_bytes())
        .map_err(|e| Error::io(format!("unable to read control/{name}"), &e))
}

/// The mailbox `addr` of the instance at `home`, from `users.cdb`. The address is
/// lower-cased; an address that is not well-formed is simply not found. A missing or
/// unreadable cdb is a temporary error.
pub fn lookup_user(home: &Path, addr: &str) -> Result<Option<User>> {
    let control = Control::for_home(home);
    let db = open_cdb(&control, USERS_CDB)?;
    let Ok(address) = address::normalise(addr) else {
        return Ok(None);
    };
    let Some(value) = get(&db, USERS_CDB, &address)? else {
        return Ok(None);
    };
    let bad = || Error::temp(format!("control/{USERS_CDB}: bad record for {address}"));
    let fields: Vec<&[u8]> = value.split(|&b| b == 0).collect();
    if fields.len() != 4 || !fields[3].is_empty() {
        return Err(bad());
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
    let hash = text(fields[0])?;
    let quota = match text(fields[1])?.as_str() {
        "" => None,
        q => Some(q.parse().map_err(|_| bad())?),
    };
    let dir = check_dir(&text(fields[2])?).map_err(|_| bad())?;
    let home_dir = home.join(dir);
    Ok(Some(User {
        maildir: home_dir.join("Maildir"),
        home: home_dir,
        address,
        hash,
        quota,
    }))
}

/// The targets of the alias `addr`: the exact address first, else the catch-all
/// `@domain`. `None` when neither exists.
pub fn resolve_alias(home: &Path, addr: &str) -> Result<Option<Vec<String>>> {
    let control = Control::for_home(home);
    let db = open_cdb(&control, ALIASES_CDB)?;
    let Ok((l, d)) = address::mailbox(addr) else {
        return Ok(None);
    };
    for key in [format!("{l}@{d}"), format!("@{d}")] {
        if let Some(v) = get(&db, ALIASES_CDB, &key)? {
            let targets = v
                .split(|&b| b == 0)
                .filter(|t| !t.is_empty())
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect();
            return Ok(Some(targets));
        }
    }
    Ok(None)
}

/// The targets stored under exactly `key` in `aliases.cdb` — `local@domain` or the
/// catch-all `@domain`, already lower-cased — with no fallback (postern-local tries the
/// extension and catch-all keys itself, in its own order). `None` when there is none.
pub fn alias_targets(home: &Path, key: &str) -> Result<Option<Vec<String>>> {
    let control = Control::for_home(home);
    let db = open_cdb(&control, ALIASES_CDB)?;
    Ok(get(&db, ALIASES_CDB, key)?.map(|v| {
        v.split(|&b| b == 0)
            .filter(|t| !t.is_empty())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()
    }))
}

/// Whether `domain` is one of this instance's virtual domains (`recipients.cdb`).
pub fn is_hosted_domain(home: &Path, domain: &str) -> Result<bool> {
    let control = Control::for_home(home);
    let db = open_cdb(&control, RECIPIENTS_CDB)?;
    let Ok(d) = address::domain(domain) else {
        return Ok(false);
    };
    Ok(get(&db, RECIPIENTS_CDB, &d)?.is_some())
}

/// Whether mail to `addr` has somewhere to go: a mailbox, an alias or a catch-all. Reads
/// only `recipients.cdb`, which holds no secrets (for the SMTP server's RCPT check).
pub fn is_valid_recipient(home: &Path, addr: &str) -> Result<bool> {
    let control = Control::for_home(home);
    let db = open_cdb(&control, RECIPIENTS_CDB)?;
    let Ok((l, d)) = address::mailbox(addr) else {
        return Ok(false);
    };
    if get(&db, RECIPIENTS_CDB, &format!("{l}@{d}"))?.is_some() {
        return Ok(true);
    }
    // `user-ext@`: as postern-local resolves it (the same cut points, then catch-all).
    for base in address::extension_bases(&l) {
        if get(&db, RECIPIENTS_CDB, &format!("{base}@{d}"))?.is_some() {
            return Ok(true);
        }
    }
    Ok(get(&db, RECIPIENTS_CDB, &format!("@{d}"))?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_common::control::parse_lines;

    const H: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA";

    #[test]
    fn user_lines() {
        let (a, h, q, d) = parse_user_line(&format!("Alice@Example.test:{H}:1000")).unwrap();
        assert_eq!(
            (a.as_str(), h.as_str(), q, d.as_str()),
            (
                "alice@example.test",
                H,
                Some(1000),
                "users/example.test/alice"
            )
        );
        let (_, _, q, d) = parse_user_line("bob@x.test:!:0:mail/bob").unwrap();
        assert_eq!((q, d.as_str()), (None, "mail/bob"));
        for bad in [
            "a@x.test",
            "a@x.test:plain:0",
            "a@x.test:!:1k",
            "a@x.test:!:0:/abs",
            "a@x.test:!:0:../up",
            "a@x.test:!:0:d:e",
        ] {
            assert!(parse_user_line(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_zero_quota_is_no_quota_however_written() {
        // Found by the fuzz target userdb: `+0` and `00` gave a quota of 0 bytes, which
        // postern-user cannot write back (it writes no quota as `0`).
        for zero in ["0", "00", ""] {
            let (_, _, q, _) = parse_user_line(&format!("a@x.test:!:{zero}")).unwrap();
            assert_eq!(q, None, "quota {zero:?}");
        }
        assert_eq!(parse_user_line("a@x.test:!:0100").unwrap().2, Some(100));
        for bad in ["+0", "+5", "-1", " 1 2"] {
            assert!(
                parse_user_line(&format!("a@x.test:!:{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn alias_lines() {
        let (k, t) =
            parse_alias_line("postmaster@x.test: alice@x.test, bob@remote.test,alice@x.test")
                .unwrap();
        assert_eq!(k.key(), "postmaster@x.test");
        assert_eq!(t, vec!["alice@x.test", "bob@remote.test"]);
        assert_eq!(
            parse_alias_line("@x.test: alice@x.test").unwrap().0,
            AliasKey::CatchAll("x.test".into())
        );
        assert!(parse_alias_line("a@x.test:").is_err());
        assert!(parse_alias_line("a@x.test |/bin/sh").is_err());
    }

    #[test]
    fn sources_are_checked_against_each_other() {
        let lines = |t: &str| parse_lines(t);
        let ok = Sources::parse(
            &lines("x.test\n"),
            &lines(&format!("a@x.test:{H}:0\n")),
            &lines("@x.test: a@x.test\n"),
        )
        .unwrap();
        assert_eq!(ok.users.len(), 1);
        let e = Sources::parse(
            &lines("x.test\n"),
            &lines(&format!("# c\na@y.test:{H}:0\n")),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.msg,
            "control/users:2: domain y.test is not in control/domains"
        );
        let e = Sources::parse(
            &lines("x.test\n"),
            &lines(&format!("a@x.test:{H}:0\nA@x.test:!:0\n")),
            &[],
        )
        .unwrap_err();
        assert!(
            e.msg
                .starts_with("control/users:2: duplicate mailbox a@x.test"),
            "{}",
            e.msg
        );
        let e = Sources::parse(
            &lines("x.test\n"),
            &lines(&format!("a@x.test:{H}:0\n")),
            &lines("a@x.test: b@y.test\n"),
        )
        .unwrap_err();
        assert!(e.msg.starts_with("control/aliases:1:"), "{}", e.msg);
    }

    #[test]
    fn compile_and_look_up() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        fs::create_dir(home.join("control")).unwrap();
        fs::write(home.join("control/domains"), "x.test\n").unwrap();
        fs::write(home.join("control/users"), format!("a@x.test:{H}:500\n")).unwrap();
        fs::write(
            home.join("control/aliases"),
            "postmaster@x.test: a@x.test\n@x.test: a@x.test, b@r.test\n",
        )
        .unwrap();
        compile_all(home).unwrap();
        let u = lookup_user(home, "A@X.test").unwrap().unwrap();
        assert_eq!(u.hash, H);
        assert_eq!(u.quota, Some(500));
        assert_eq!(u.maildir, home.join("users/x.test/a/Maildir"));
        assert!(lookup_user(home, "b@x.test").unwrap().is_none());
        assert!(lookup_user(home, "../etc@x.test").unwrap().is_none());
        assert_eq!(
            resolve_alias(home, "postmaster@x.test").unwrap().unwrap(),
            vec!["a@x.test"]
        );
        assert_eq!(
            resolve_alias(home, "zz@x.test").unwrap().unwrap(),
            vec!["a@x.test", "b@r.test"]
        );
        assert!(resolve_alias(home, "zz@y.test").unwrap().is_none());
        assert!(is_hosted_domain(home, "X.TEST").unwrap());
        assert!(!is_hosted_domain(home, "y.test").unwrap());
        assert!(is_valid_recipient(home, "anything@x.test").unwrap());
        assert!(!is_valid_recipient(home, "a@y.test").unwrap());
    }

    /// `user-ext@` is valid at RCPT exactly when postern-local would deliver it: the
    /// same cut points (address::extension_bases), without a catch-all to hide behind.
    #[test]
    fn extension_addresses_are_valid_recipients_as_local_delivers_them() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        fs::create_dir(home.join("control")).unwrap();
        fs::write(home.join("control/domains"), "x.test\n").unwrap();
        fs::write(
            home.join("control/users"),
            format!("alice@x.test:{H}:500\n"),
        )
        .unwrap();
        fs::write(home.join("control/aliases"), "sales@x.test: alice@x.test\n").unwrap();
        compile_all(home).unwrap();
        assert!(is_valid_recipient(home, "alice-lists@x.test").unwrap());
        assert!(is_valid_recipient(home, "Alice-a-b@X.test").unwrap());
        assert!(is_valid_recipient(home, "sales-eu@x.test").unwrap());
        assert!(!is_valid_recipient(home, "bob-alice@x.test").unwrap());
        assert!(!is_valid_recipient(home, "alicex@x.test").unwrap());
    }

    /// Regression (empty-cdb bug): the `cdb` crate refuses cdbs without records, and
    /// every lookup used to report that as trouble on an instance with no users, aliases
    /// or domains.
    #[test]
    fn empty_cdb_lookups_are_not_found_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        fs::create_dir(home.join("control")).unwrap();
        compile_all(home).unwrap();
        let lookups_find_nothing = || {
            assert!(lookup_user(home, "a@x.test").unwrap().is_none());
            assert!(resolve_alias(home, "a@x.test").unwrap().is_none());
            assert!(alias_targets(home, "@x.test").unwrap().is_none());
            assert!(!is_hosted_domain(home, "x.test").unwrap());
            assert!(!is_valid_recipient(home, "a@x.test").unwrap());
        };
        for name in [USERS_CDB, ALIASES_CDB, RECIPIENTS_CDB] {
            let len = fs::metadata(home.join("control").join(name)).unwrap().len();
            assert_eq!(len, CDB_HEADER as u64, "{name}");
        }
        lookups_find_nothing();
        // Empty cdbs as other writers make them: tinycdb and cdbmake write the 2048-byte
        // header (every table at 2048, no slots); a writer may leave bytes after it.
        let mut empty = Vec::new();
        for _ in 0..256 {
            empty.extend_from_slice(&2048u32.to_le_bytes());
            empty.extend_from_slice(&0u32.to_le_bytes());
        }
        for extra in [0usize, 8, 15] {
            let mut bytes = empty.clone();
            bytes.resize(CDB_HEADER + extra, 0);
            for name in [USERS_CDB, ALIASES_CDB, RECIPIENTS_CDB] {
                fs::write(home.join("control").join(name), &bytes).unwrap();
            }
            lookups_find_nothing();
        }
        // A short file that is not an empty cdb is trouble, not "nobody here".
        for junk in [vec![0xffu8; CDB_HEADER], vec![0u8; 100], Vec::new()] {
            fs::write(home.join("control").join(USERS_CDB), &junk).unwrap();
            let e = lookup_user(home, "a@x.test").unwrap_err();
            assert_eq!(e.kind, postern_common::Kind::Temp);
            assert!(
                e.msg.contains("control/users.cdb: not a cdb file"),
                "{}",
                e.msg
            );
        }
        // And a database with entries still answers (the writer's smallest is 2072).
        fs::write(home.join("control/domains"), "x.test\n").unwrap();
        fs::write(home.join("control/aliases"), "@x.test: r@far.test\n").unwrap();
        compile_all(home).unwrap();
        assert!(lookup_user(home, "a@x.test").unwrap().is_none());
        assert_eq!(
            alias_targets(home, "@x.test").unwrap().unwrap(),
            vec!["r@far.test"]
        );
        assert!(alias_targets(home, "a@x.test").unwrap().is_none());
        assert!(is_hosted_domain(home, "x.test").unwrap());
    }

    #[test]
    fn compiled_cdbs_are_byte_identical_to_tinycdbs() {
        let Some(tinycdb) = postern_testkit::require("cdb", "tinycdb") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ours.cdb");
        let mut records: Vec<(Vec<u8>, Vec<u8>)> = (0..300)
            .map(|i| {
                (
                    format!("u{i}@x.test").into_bytes(),
                    format!("h\0{i}\0d\0").into_bytes(),
                )
            })
            .collect();
        records.push((b"@x.test".to_vec(), b"a@y.test\0".to_vec()));
        records.push((b"x.test".to_vec(), Vec::new()));
        write_cdb(&path, &records, 0o644, None).unwrap();
        // tinycdb's `cdb -c` reads cdbmake's input: `+KLEN,DLEN:KEY->DATA` lines.
        let mut input = Vec::new();
        for (k, v) in &records {
            input.extend_from_slice(format!("+{},{}:", k.len(), v.len()).as_bytes());
            input.extend_from_slice(k);
            input.extend_from_slice(b"->");
            input.extend_from_slice(v);
            input.push(b'\n');
        }
        input.push(b'\n');
        let theirs = dir.path().join("theirs.cdb");
        let mut child = std::process::Command::new(tinycdb)
            .arg("-c")
            .arg(&theirs)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(fs::read(&path).unwrap(), fs::read(&theirs).unwrap());
    }

    #[test]
    fn missing_cdb_is_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let e = lookup_user(dir.path(), "a@x.test").unwrap_err();
        assert_eq!(e.kind, postern_common::Kind::Temp);
        assert!(
            e.msg.starts_with("unable to open control/users.cdb"),
            "{}",
            e.msg
        );
    }
}
