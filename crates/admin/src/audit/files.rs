//! Files: who may change the configuration and the programs, who may read the secrets,
//! and whether anything changed since the admin last accepted the instance.
//!
//! - Not writable by others: the instance directory, `control/` and everything in it,
//!   `bin/` and every program in it (a symlink is judged by its target, which is what
//!   runs), `service/*/run` and `service/*/log/run` — no group or other write bit, and
//!   not owned by a daemon account (`postern-net`, `postern-log`), so a compromised
//!   daemon cannot rewrite its own rules.
//! - Not readable by others: the password data `control/users`, `control/users.cdb`,
//!   `control/popularity*` and the TLS key `control/tls/key.pem`.
//! - The tripwire: `posternctl audit --record` writes the SHA-256 of every control file,
//!   run script and program to `control/.audit-checksums` (mode 0600, in `sha256sum`'s
//!   format, so `cd $POSTERN_HOME && sha256sum -c control/.audit-checksums` works too);
//!   a later audit FAILs naming each file changed or removed since, and WARNs for files
//!   that are new. Files the daemons rewrite themselves are left out ([`VOLATILE`]).

use super::Finding;
use postern_common::{Error, Result, ResultExt};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const ITEM_WRITABLE: &str = "file modes";
pub const ITEM_SECRETS: &str = "secrets";
pub const ITEM_INTEGRITY: &str = "integrity";
/// The checksum file, in `control/`.
pub const CHECKSUMS: &str = ".audit-checksums";
/// Control files the programs rewrite as they run: not part of the tripwire.
pub const VOLATILE: &[&str] = &[
    CHECKSUMS,
    "users.lock",
    "ratelimit.blocked",
    "holdbulk",
    "popularity",
];
/// Secret files in `control/` (names, or prefixes ending in `*`).
pub const SECRETS: &[&str] = &["users", "users.cdb", "popularity*", "tls/key.pem"];
/// Most entries looked at per directory.
pub const MAX_ENTRIES: usize = 10_000;
/// Bytes read per step while hashing.
const HASH_CHUNK: usize = 64 * 1024;

/// The files of `dir`, sorted, to `depth` levels of subdirectories.
fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .take(MAX_ENTRIES)
        .map(|e| e.path())
        .collect();
    paths.sort();
    for p in paths {
        let is_dir = fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir {
            if depth > 0 {
                out.push(p.clone());
                walk(&p, depth - 1, out);
            }
        } else {
            out.push(p);
        }
    }
}

/// The run scripts: `service/*/run` and `service/*/log/run`.
fn run_scripts(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(dirs) = crate::services::service_dirs(home) {
        for d in dirs {
            for p in [d.join("run"), d.join("log").join("run")] {
                if p.exists() {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Everything whose write permission matters.
fn guarded(home: &Path) -> Vec<PathBuf> {
    let mut out = vec![home.to_path_buf(), home.join("control")];
    walk(&home.join("control"), 2, &mut out);
    if home.join("bin").is_dir() {
        out.push(home.join("bin"));
        walk(&home.join("bin"), 0, &mut out);
    }
    out.extend(run_scripts(home));
    out
}

fn relative(home: &Path, p: &Path) -> String {
    p.strip_prefix(home)
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

/// uids of the network and log accounts of this instance (`control/accounts`, else
/// `postern-ROLE`), where they exist: what they own must not be trusted configuration.
fn daemon_uids(home: &Path) -> Vec<(u32, String)> {
    let control = postern_common::control::Control::for_home(home);
    let accounts = crate::init::accounts(&control).unwrap_or_default();
    accounts
        .into_iter()
        .filter(|(role, _)| matches!(*role, "net" | "log"))
        .filter_map(|(_, name)| {
            postern_common::privilege::lookup_account(&name)
                .ok()
                .map(|a| (a.uid, name))
        })
        .collect()
}

/// The modes item and the secrets item.
pub fn findings(home: &Path) -> Vec<Finding> {
    let daemons = daemon_uids(home);
    let mut bad = Vec::new();
    let paths = guarded(home);
    for p in &paths {
        // metadata() follows symlinks: a linked program is judged by what runs.
        let Ok(m) = fs::metadata(p) else { continue };
        let mode = m.permissions().mode() & 0o7777;
        let name = relative(home, p);
        if mode & 0o022 != 0 {
            let who = if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            };
            bad.push(format!("{name} (mode {mode:04o}: writable by {who})"));
        } else if let Some((_, account)) = daemons.iter().find(|(uid, _)| *uid == m.uid()) {
            bad.push(format!("{name} (owned by the daemon account {account})"));
        }
    }
    let writable =
        if bad.is_empty() {
            Finding::pass(
                ITEM_WRITABLE,
                format!(
                    "{} control files, programs and run scripts writable only by their owner",
                    paths.len()
                ),
            )
        } else {
            Finding::fail(
            ITEM_WRITABLE,
            format!("others could change the configuration or the programs: {}", super::list(&bad)),
            "chmod go-w on each (control files 0644, programs and run scripts 0755, directories \
             0755), owned by root or the instance's owner",
        )
        };
    vec![writable, secrets(home)]
}

fn is_secret(rel: &str) -> bool {
    SECRETS.iter().any(|s| match s.strip_suffix('*') {
        Some(prefix) => rel.starts_with(prefix),
        None => rel == *s,
    })
}

fn secrets(home: &Path) -> Finding {
    let control = home.join("control");
    let mut all = Vec::new();
    walk(&control, 1, &mut all);
    let mut found = 0;
    let mut bad = Vec::new();
    for p in all {
        let rel = relative(&control, &p);
        if !is_secret(&rel) || rel.ends_with(".tmp") {
            continue;
        }
        let Ok(m) = fs::metadata(&p) else { continue };
        found += 1;
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o004 != 0 {
            bad.push(format!("control/{rel} (mode {mode:04o})"));
        }
    }
    if bad.is_empty() {
        Finding::pass(
            ITEM_SECRETS,
            format!("{found} password and key files, none readable by others"),
        )
    } else {
        Finding::fail(
            ITEM_SECRETS,
            format!("readable by every local user: {}", super::list(&bad)),
            "chmod o-r on each (users and key.pem 0600; users.cdb 0640 with the mailbox group)",
        )
    }
}

/// The files the tripwire covers, relative to `home`.
fn covered(home: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    walk(&home.join("control"), 2, &mut paths);
    walk(&home.join("bin"), 0, &mut paths);
    paths.extend(run_scripts(home));
    let mut out: Vec<String> = paths
        .into_iter()
        .filter(|p| fs::metadata(p).map(|m| m.is_file()).unwrap_or(false))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !VOLATILE.contains(&name.as_str()) && !name.ends_with(".tmp")
        })
        .map(|p| relative(home, &p))
        .filter(|r| !r.contains('\n') && !r.contains('\\'))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The SHA-256 of a file, in hex.
pub fn sha256(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; HASH_CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `audit --record`: write the checksums; returns how many files.
pub fn record(home: &Path) -> Result<usize> {
    let mut text = String::new();
    let files = covered(home);
    for rel in &files {
        let sum = sha256(&home.join(rel)).temp(format!("unable to read {rel}"))?;
        text.push_str(&format!("{sum}  {rel}\n"));
    }
    let path = home.join("control").join(CHECKSUMS);
    postern_common::atomic::write_atomic(&path, text.as_bytes(), 0o600)
        .temp(format!("unable to write control/{CHECKSUMS}"))?;
    Ok(files.len())
}

/// Parse the checksum file: path → hex.
pub fn parse_checksums(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let (sum, path) = line
            .split_once("  ")
            .filter(|(s, p)| {
                s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) && !p.is_empty()
            })
            .ok_or_else(|| format!("control/{CHECKSUMS}:{}: not SUM  PATH", i + 1))?;
        out.insert(path.to_string(), sum.to_ascii_lowercase());
    }
    Ok(out)
}

/// The integrity item.
pub fn integrity(home: &Path) -> Finding {
    let path = home.join("control").join(CHECKSUMS);
    let accept = "if every change is yours: posternctl audit --record";
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Finding::warn(
                ITEM_INTEGRITY,
                "no checksums recorded: changes to control files, run scripts and programs go unnoticed",
                "once the instance is as you want it: posternctl audit --record",
            )
        }
        Err(e) => {
            return Finding::warn(
                ITEM_INTEGRITY,
                Error::io(format!("unable to read control/{CHECKSUMS}"), &e).msg,
                "run the audit as the instance's owner (or root)",
            )
        }
    };
    let recorded = match parse_checksums(&text) {
        Ok(r) => r,
        Err(e) => {
            return Finding::fail(
                ITEM_INTEGRITY,
                e,
                "check who edited it; then posternctl audit --record",
            )
        }
    };
    let (mut changed, mut removed) = (Vec::new(), Vec::new());
    for (rel, sum) in &recorded {
        match sha256(&home.join(rel)) {
            Ok(now) if &now == sum => {}
            Ok(_) => changed.push(rel.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => removed.push(rel.clone()),
            Err(e) => changed.push(format!(
                "{rel} (unreadable: {})",
                postern_common::exit::describe_io(&e)
            )),
        }
    }
    let added: Vec<String> = covered(home)
        .into_iter()
        .filter(|r| !recorded.contains_key(r))
        .collect();
    if !changed.is_empty() || !removed.is_empty() {
        let mut what = Vec::new();
        if !changed.is_empty() {
            what.push(format!("changed: {}", super::list(&changed)));
        }
        if !removed.is_empty() {
            what.push(format!("removed: {}", super::list(&removed)));
        }
        if !added.is_empty() {
            what.push(format!("new: {}", super::list(&added)));
        }
        return Finding::fail(
            ITEM_INTEGRITY,
            format!("since the last record {}", what.join("; ")),
            format!("find out who changed them and why; {accept}"),
        );
    }
    if !added.is_empty() {
        return Finding::warn(
            ITEM_INTEGRITY,
            format!("new since the last record: {}", super::list(&added)),
            accept,
        );
    }
    Finding::pass(
        ITEM_INTEGRITY,
        format!("{} files as recorded", recorded.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files_parse() {
        let sum = "a".repeat(64);
        let map = parse_checksums(&format!("{sum}  control/me\n\n{sum}  bin/x y\n")).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["bin/x y"], sum);
        assert!(parse_checksums("abc  control/me\n").is_err());
    }

    #[test]
    fn sha256_of_a_file() {
        let d = postern_testkit::tempdir();
        let p = d.path().join("f");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_are_named() {
        assert!(is_secret("users"));
        assert!(is_secret("popularity.key"));
        assert!(is_secret("tls/key.pem"));
        assert!(!is_secret("users.lock"));
        assert!(!is_secret("tls/cert.pem"));
        assert!(!is_secret("aliases"));
    }
}
