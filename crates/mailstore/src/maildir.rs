//! Maildirs and Maildir++ quotas (`maildirsize`), as Courier, Dovecot and the classic
//! `deliverquota` read and write them.
//!
//! `maildirsize` lives in the top maildir: line 1 is the quota (`<n>S` bytes and/or
//! `<n>C` messages, comma-separated), each further line `<bytes> <count>` (may be
//! negative); usage is their sum. It is recalculated from the files when it is missing
//! (and a quota is known), at least [`MAX_SIZE_FILE`] bytes long, unreadable, or when it
//! shows the maildir over quota and has more than one usage line or is at least
//! [`STALE_SECS`] old.

use postern_common::{Error, Result, ResultExt};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

pub const SIZE_FILE: &str = "maildirsize";
/// A maildirsize this long or longer is recalculated (Maildir++).
pub const MAX_SIZE_FILE: usize = 5120;
/// An over-quota maildirsize older than this is recalculated before refusing.
pub const STALE_SECS: u64 = 15 * 60;
/// Mode of every directory of a mailbox.
pub const DIR_MODE: u32 = 0o700;
/// Most folders (`.Name`) counted in a recalculation.
pub const MAX_FOLDERS: usize = 10_000;

/// Create `dir` (and missing parents down from `top`) with [`DIR_MODE`], owned by
/// `owner` when given (root only). Existing directories are left alone.
fn make_dir(dir: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .temp(format!("unable to chown {}", dir.display()))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(Error::io(format!("unable to create {}", dir.display()), &e)),
    }
}

/// Create the user's directory `home` and `home/Maildir/{tmp,new,cur}`, all 0700 and
/// owned by `owner`. The parent of `home` (`users/DOMAIN`) is created the same way if
/// missing; `users/` itself must exist (posternctl init, or `mkdir`).
pub fn create_mailbox(home: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some(parent) = home.parent() {
        if let Some(grand) = parent.parent() {
            if !grand.is_dir() {
                return Err(Error::temp(format!(
                    "unable to create {}: {} does not exist",
                    home.display(),
                    grand.display()
                )));
            }
        }
        make_dir(parent, owner)?;
    }
    make_dir(home, owner)?;
    let maildir = home.join("Maildir");
    make_dir(&maildir, owner)?;
    for sub in ["tmp", "new", "cur"] {
        make_dir(&maildir.join(sub), owner)?;
    }
    Ok(())
}

/// A Maildir++ quota definition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub bytes: Option<u64>,
    pub count: Option<u64>,
}

impl Quota {
    pub fn bytes(n: u64) -> Quota {
        Quota {
            bytes: Some(n),
            count: None,
        }
    }

    /// Parse `10000000S,1000C` (either part optional; unknown parts are ignored, as
    /// Courier does).
    pub fn parse(text: &str) -> Option<Quota> {
        let mut q = Quota::default();
        for part in text
            .trim()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if let Some(n) = part.strip_suffix('S') {
                q.bytes = Some(n.parse().ok()?);
            } else if let Some(n) = part.strip_suffix('C') {
                q.count = Some(n.parse().ok()?);
            }
        }
        Some(q)
    }

    pub fn render(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.bytes {
            parts.push(format!("{b}S"));
        }
        if let Some(c) = self.count {
            parts.push(format!("{c}C"));
        }
        parts.join(",")
    }

    /// Whether `usage` plus one message of `size` bytes would exceed the quota.
    pub fn exceeded_by(&self, usage: Usage, size: u64) -> bool {
        let over_bytes = self
            .bytes
            .is_some_and(|q| q > 0 && usage.bytes.saturating_add(size as i64) > q as i64);
        let over_count = self
            .count
            .is_some_and(|q| q > 0 && usage.count.saturating_add(1) > q as i64);
        over_bytes || over_count
    }
}

/// Bytes and messages in a maildir.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: i64,
    pub count: i64,
}

/// A parsed `maildirsize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeFile {
    pub quota: Quota,
    pub usage: Usage,
    /// Usage lines after the quota line.
    pub lines: usize,
}

/// Parse the text of a `maildirsize`; `None` if any line is malformed.
pub fn parse_size_file(text: &str) -> Option<SizeFile> {
    let mut lines = text.lines();
    let quota = Quota::parse(lines.next()?)?;
    let mut usage = Usage::default();
    let mut n = 0;
    for l in lines.filter(|l| !l.trim().is_empty()) {
        let mut f = l.split_whitespace();
        let b: i64 = f.next()?.parse().ok()?;
        let c: i64 = f.next()?.parse().ok()?;
        usage.bytes = usage.bytes.saturating_add(b);
        usage.count = usage.count.saturating_add(c);
        n += 1;
    }
    Some(SizeFile {
        quota,
        usage,
        lines: n,
    })
}

/// Read `maildirsize`: `Ok(None)` when missing, `Ok(Some(None))` when it must be
/// recalculated (too long or malformed).
fn read_size_file(maildir: &Path) -> Result<Option<(Option<SizeFile>, SystemTime)>> {
    let path = maildir.join(SIZE_FILE);
    let mut f = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("unable to open {}", path.display()), &e)),
    };
    let mtime = f
        .metadata()
        .and_then(|m| m.modified())
        .temp(format!("unable to stat {}", path.display()))?;
    let mut buf = Vec::with_capacity(MAX_SIZE_FILE);
    (&mut f)
        .take(MAX_SIZE_FILE as u64)
        .read_to_end(&mut buf)
        .temp(format!("unable to read {}", path.display()))?;
    if buf.len() >= MAX_SIZE_FILE {
        return Ok(Some((None, mtime)));
    }
    Ok(Some((
        std::str::from_utf8(&buf).ok().and_then(parse_size_file),
        mtime,
    )))
}

/// The size a message file's name gives: `,S=<n>` before the `:` (the size the
/// delivery counted). Other programs removing messages (postern-pop3d) use it, with
/// the file's length as the fallback, so they subtract what was added.
pub fn size_in_name(name: &[u8]) -> Option<u64> {
    let base = name.split(|&b| b == b':').next().unwrap_or(name);
    base.split(|&b| b == b',')
        .find_map(|p| p.strip_prefix(b"S="))
        .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
}

/// The size of a message file: `,S=<n>` in its name, else its length on disk.
fn message_size(dir: &Path, name: &str) -> Option<u64> {
    if let Some(n) = size_in_name(name.as_bytes()) {
        return Some(n);
    }
    fs::metadata(dir.join(name)).ok().map(|m| m.len())
}

/// Newest mtime (seconds) of the directories counted, to detect changes during a scan.
fn scan_dirs(maildir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut dirs = vec![maildir.join("new"), maildir.join("cur")];
    let entries = fs::read_dir(maildir).temp(format!("unable to read {}", maildir.display()))?;
    for entry in entries.flatten().take(MAX_FOLDERS) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.')
            && name != "."
            && name != ".."
            && name != ".Trash"
            && entry.path().is_dir()
        {
            dirs.push(entry.path().join("new"));
            dirs.push(entry.path().join("cur"));
        }
    }
    Ok(dirs)
}

fn newest_mtime(dirs: &[std::path::PathBuf]) -> i64 {
    dirs.iter()
        .filter_map(|d| fs::metadata(d).ok())
        .map(|m| m.mtime())
        .max()
        .unwrap_or(0)
}

/// Count the messages of a maildir from its files: new/ and cur/ of the top and of
/// every folder except `.Trash`. Files that vanish meanwhile are skipped.
pub fn scan(maildir: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    for dir in scan_dirs(maildir)? {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("unable to read {}", dir.display()), &e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            if let Some(size) = message_size(&dir, &name) {
                usage.bytes = usage.bytes.saturating_add(size as i64);
                usage.count += 1;
            }
        }
    }
    Ok(usage)
}

/// Write a fresh `maildirsize` with `quota` and the counted usage (via tmp/ and a
/// rename). The file belongs to the maildir's owner, so deliveries can append to it.
/// If the maildir changed during the count, the file is removed again so the next
/// reader recounts. Returns the usage counted.
pub fn recalculate(maildir: &Path, quota: Quota) -> Result<Usage> {
    let dirs = scan_dirs(maildir)?;
    let before = newest_mtime(&dirs);
    let usage = scan(maildir)?;
    let text = format!(
        "{}\n{:>8} {:>4}\n",
        quota.render(),
        usage.bytes,
        usage.count
    );
    let tmp =
        maildir
            .join("tmp")
            .join(format!("{}.{}.maildirsize", now_secs(), std::process::id()));
    let path = maildir.join(SIZE_FILE);
    let result = (|| -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if postern_common::privilege::is_root() {
            let m = fs::metadata(maildir)?;
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("unable to write {}", path.display()), &e));
    }
    if newest_mtime(&dirs) != before {
        let _ = fs::remove_file(&path);
    }
    Ok(usage)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Set (or with `None`, remove) the quota of a maildir, recounting its usage.
pub fn set_quota(maildir: &Path, bytes: Option<u64>) -> Result<()> {
    match bytes {
        Some(b) => recalculate(maildir, Quota::bytes(b)).map(|_| ()),
        None => match fs::remove_file(maildir.join(SIZE_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(
                format!("unable to remove {}", maildir.join(SIZE_FILE).display()),
                &e,
            )),
            _ => Ok(()),
        },
    }
}

/// The usage of a maildir: from `maildirsize` when it is sound, else counted (without
/// writing anything).
pub fn usage(maildir: &Path) -> Result<Usage> {
    match read_size_file(maildir)? {
        Some((Some(sf), _)) => Ok(sf.usage),
        _ => scan(maildir),
    }
}

/// The answer of [`check_quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaCheck {
    /// The message fits (or there is no quota).
    Ok,
    /// Delivering it would exceed the quota: a permanent refusal for this message.
    Over,
}

/// Whether a message of `size` bytes fits in `maildir`, by the Maildir++ rules. The
/// quota is the one in `maildirsize`; no file means no quota.
pub fn check_quota(maildir: &Path, size: u64) -> Result<QuotaCheck> {
    let Some((parsed, mtime)) = read_size_file(maildir)? else {
        return Ok(QuotaCheck::Ok);
    };
    let sf = match parsed {
        Some(sf) => sf,
        None => {
            // Too long or damaged: recount, keeping the quota line if it is readable.
            let text = fs::read_to_string(maildir.join(SIZE_FILE)).unwrap_or_default();
            let quota = text
                .lines()
                .next()
                .and_then(Quota::parse)
                .unwrap_or_default();
            let usage = recalculate(maildir, quota)?;
            SizeFile {
                quota,
                usage,
                lines: 1,
            }
        }
    };
    if !sf.quota.exceeded_by(sf.usage, size) {
        return Ok(QuotaCheck::Ok);
    }
    let old = mtime.elapsed().unwrap_or(Duration::ZERO) >= Duration::from_secs(STALE_SECS);
    if sf.lines > 1 || old {
        let usage = recalculate(maildir, sf.quota)?;
        if !sf.quota.exceeded_by(usage, size) {
            return Ok(QuotaCheck::Ok);
        }
    }
    Ok(QuotaCheck::Over)
}

/// Add one delivered message of `size` bytes to `maildirsize` (after the link into
/// new/). No file means no quota, and nothing is written.
pub fn record_delivery(maildir: &Path, size: u64) -> Result<()> {
    append(maildir, size as i64, 1)
}

/// Append one usage line (`-size -1` for a removal).
pub fn append(maildir: &Path, bytes: i64, count: i64) -> Result<()> {
    let path = maildir.join(SIZE_FILE);
    let mut f = match fs::OpenOptions::new().append(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("unable to open {}", path.display()), &e)),
    };
    // One write of one short line: O_APPEND keeps concurrent deliveries' lines whole.
    f.write_all(format!("{bytes:>8} {count:>4}\n").as_bytes())
        .temp(format!("unable to append to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir() -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("users")).unwrap();
        let home = d.path().join("users/x.test/a");
        create_mailbox(&home, None).unwrap();
        (d, home.join("Maildir"))
    }

    #[test]
    fn sizes_in_names() {
        assert_eq!(size_in_name(b"1.2.h,S=1234:2,S"), Some(1234));
        assert_eq!(size_in_name(b"1.2.h,W=20,S=12"), Some(12));
        assert_eq!(
            size_in_name(b"1.2.h:2,S=99"),
            None,
            "after the colon: flags"
        );
        assert_eq!(size_in_name(b"1.2.h,S=x"), None);
        assert_eq!(size_in_name(b"1.2.h"), None);
    }

    #[test]
    fn quota_lines() {
        assert_eq!(
            Quota::parse("10000000S,1000C"),
            Some(Quota {
                bytes: Some(10_000_000),
                count: Some(1000)
            })
        );
        assert_eq!(Quota::parse("500S").unwrap().render(), "500S");
        assert_eq!(Quota::parse("xS"), None);
        let sf = parse_size_file("100S\n  50    1\n  -20   -1\n 30 1\n").unwrap();
        assert_eq!(
            sf.usage,
            Usage {
                bytes: 60,
                count: 1
            }
        );
        assert_eq!(sf.lines, 3);
        assert!(parse_size_file("100S\nfoo bar\n").is_none());
    }

    #[test]
    fn mailbox_dirs_are_private() {
        let (_d, md) = maildir();
        for sub in ["", "tmp", "new", "cur"] {
            let m = fs::metadata(md.join(sub)).unwrap();
            assert_eq!(m.mode() & 0o777, 0o700, "{sub}");
        }
    }

    #[test]
    fn counting_uses_s_equals_and_skips_trash() {
        let (_d, md) = maildir();
        fs::write(md.join("new/1.M1P1.h,S=100"), b"xx").unwrap();
        fs::write(md.join("cur/2.M2P2.h:2,S"), b"12345").unwrap();
        fs::write(md.join("cur/.hidden"), b"12345").unwrap();
        for f in [".Sent", ".Trash"] {
            for sub in ["new", "cur", "tmp"] {
                fs::create_dir_all(md.join(f).join(sub)).unwrap();
            }
        }
        fs::write(md.join(".Sent/cur/3.x.h"), b"1234567").unwrap();
        fs::write(md.join(".Trash/cur/4.x.h"), b"1234567").unwrap();
        assert_eq!(
            scan(&md).unwrap(),
            Usage {
                bytes: 112,
                count: 3
            }
        );
    }

    #[test]
    fn quota_check_and_delivery_accounting() {
        let (_d, md) = maildir();
        assert_eq!(
            check_quota(&md, 1 << 40).unwrap(),
            QuotaCheck::Ok,
            "no maildirsize: no quota"
        );
        set_quota(&md, Some(1000)).unwrap();
        assert_eq!(
            fs::read_to_string(md.join(SIZE_FILE)).unwrap(),
            "1000S\n       0    0\n"
        );
        assert_eq!(check_quota(&md, 600).unwrap(), QuotaCheck::Ok);
        fs::write(md.join("new/1.a.h,S=600"), vec![b'x'; 600]).unwrap();
        record_delivery(&md, 600).unwrap();
        assert_eq!(
            usage(&md).unwrap(),
            Usage {
                bytes: 600,
                count: 1
            }
        );
        assert_eq!(check_quota(&md, 500).unwrap(), QuotaCheck::Over);
        // The message goes away behind our back. A fresh one-line file is trusted...
        fs::remove_file(md.join("new/1.a.h,S=600")).unwrap();
        assert_eq!(check_quota(&md, 500).unwrap(), QuotaCheck::Over);
        // ...but once it is 15 minutes old, an over-quota answer triggers a recount.
        let old = SystemTime::now() - Duration::from_secs(STALE_SECS + 60);
        fs::File::options()
            .write(true)
            .open(md.join(SIZE_FILE))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(check_quota(&md, 500).unwrap(), QuotaCheck::Ok);
        assert_eq!(usage(&md).unwrap(), Usage { bytes: 0, count: 0 });
        set_quota(&md, None).unwrap();
        assert!(!md.join(SIZE_FILE).exists());
    }

    #[test]
    fn overlong_maildirsize_is_recalculated() {
        let (_d, md) = maildir();
        let mut text = String::from("100S\n");
        while text.len() < MAX_SIZE_FILE {
            text.push_str("       1    1\n");
        }
        fs::write(md.join(SIZE_FILE), text).unwrap();
        assert_eq!(check_quota(&md, 10).unwrap(), QuotaCheck::Ok);
        assert_eq!(
            fs::read_to_string(md.join(SIZE_FILE)).unwrap(),
            "100S\n       0    0\n"
        );
    }
}
