//! Writing one message into a Maildir the safe way: create `tmp/UNIQUE`
//! exclusively, write, fsync, close; check the Maildir++ quota with the final size;
//! `link` into `new/UNIQUE,S=SIZE`; fsync `new/`; unlink the tmp file; then append the
//! size to `maildirsize`. The message counts as delivered at the link.
//!
//! Before anything is written the mailbox is checked: the user directory, `Maildir`,
//! `tmp/` and `new/` must be real directories (not symlinks) owned by the expected uid.
//! A mailbox that is not is a misconfiguration for the admin to fix, not a reason to
//! lose the mail: the delivery fails temporarily (`#4.3.5`) and the message waits in
//! the queue (until `queuelifetime`), with the reason in postern-send's log.

use postern_common::{Error, Result, ResultExt};
use postern_mailstore::maildir as store;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Tries at a unique tmp/ name before giving up (qmail-local: 3).
pub const CREATE_TRIES: u32 = 3;
/// Largest message written (a bound; the queue's databytes is far lower).
pub const MAX_MESSAGE: u64 = 1 << 32;

/// Refuse a mailbox whose directories are symlinks, not directories, or belong to
/// someone else. Temporary (`#4.3.5`, system incorrectly configured): nothing has been
/// written, and the mail is kept until the mailbox is fixed.
pub fn check_mailbox(home: &Path, maildir: &Path, uid: u32) -> Result<()> {
    let unsafe_mailbox = |what: String| {
        Error::temp(format!(
            "{what}: refused until the mailbox is fixed (#4.3.5)"
        ))
    };
    for dir in [
        home.to_path_buf(),
        maildir.to_path_buf(),
        maildir.join("tmp"),
        maildir.join("new"),
    ] {
        let meta = match fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::temp(format!(
                    "mailbox directory {} does not exist (#4.2.1)",
                    dir.display()
                )))
            }
            Err(e) => return Err(e).temp(format!("unable to stat {}", dir.display())),
        };
        if meta.file_type().is_symlink() {
            return Err(unsafe_mailbox(format!(
                "mailbox directory {} is a symbolic link",
                dir.display()
            )));
        }
        if !meta.is_dir() {
            return Err(unsafe_mailbox(format!(
                "mailbox {} is not a directory",
                dir.display()
            )));
        }
        if meta.uid() != uid {
            return Err(unsafe_mailbox(format!(
                "mailbox directory {} belongs to uid {}, not {uid}",
                dir.display(),
                meta.uid()
            )));
        }
    }
    Ok(())
}

/// This host's name made safe for a Maildir unique name (`/` and `:` escaped).
fn host_part() -> String {
    postern_common::control::system_hostname()
        .replace('/', "\\057")
        .replace(':', "\\072")
        .replace(',', "\\054")
}

fn unique(try_no: u32) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        try_no + 1,
        host_part()
    )
}

/// Deliver `prefix` followed by the rest of `input` into `maildir`. `quota` (bytes)
/// from the user database seeds `maildirsize` when it is missing. Returns the name in
/// `new/`.
pub fn deliver(
    maildir: &Path,
    quota: Option<u64>,
    prefix: &[u8],
    input: &mut dyn Read,
) -> Result<String> {
    let mut attempt = 0;
    let (name, mut file) = loop {
        let name = unique(attempt);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(maildir.join("tmp").join(&name))
        {
            Ok(f) => break (name, f),
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists && attempt + 1 < CREATE_TRIES =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e).temp("unable to create a file in the mailbox tmp/ (#4.2.1)"),
        }
    };
    let tmp = maildir.join("tmp").join(&name);
    let result = (|| -> Result<String> {
        file.write_all(prefix)
            .temp("unable to write the message (#4.3.0)")?;
        let copied = std::io::copy(&mut input.take(MAX_MESSAGE), &mut file)
            .temp("unable to write the message (#4.3.0)")?;
        if copied >= MAX_MESSAGE {
            return Err(Error::perm(format!(
                "message is larger than {MAX_MESSAGE} bytes (#5.3.4)"
            )));
        }
        file.sync_all()
            .temp("unable to fsync the message (#4.3.0)")?;
        let size = prefix.len() as u64 + copied;
        drop(file);
        if let Some(q) = quota.filter(|&q| q > 0) {
            if !maildir.join(store::SIZE_FILE).exists() {
                store::set_quota(maildir, Some(q))?;
            }
        }
        if store::check_quota(maildir, size)? == store::QuotaCheck::Over {
            return Err(Error::temp("mailbox is over quota (#4.2.2)"));
        }
        let final_name = format!("{name},S={size}");
        fs::hard_link(&tmp, maildir.join("new").join(&final_name))
            .temp("unable to link the message into new/ (#4.3.0)")?;
        postern_common::atomic::fsync_dir(&maildir.join("new"))
            .temp("unable to fsync new/ (#4.3.0)")?;
        // Delivered: nothing below may turn this into a failure.
        let _ = fs::remove_file(&tmp);
        if let Err(e) = store::record_delivery(maildir, size) {
            postern_common::exit::warn("postern-local", format!("maildirsize not updated: {e}"));
        }
        Ok(final_name)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox() -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let md = d.path().join("u/Maildir");
        for s in ["tmp", "new", "cur"] {
            fs::create_dir_all(md.join(s)).unwrap();
        }
        (d, md)
    }

    #[test]
    fn delivers_exact_bytes_and_leaves_tmp_empty() {
        let (_d, md) = mailbox();
        let mut body: &[u8] = b"Subject: x\n\nhello\n";
        let name = deliver(&md, None, b"Return-Path: <a@b>\n", &mut body).unwrap();
        assert!(name.ends_with(&format!(",S={}", 19 + 18)), "{name}");
        assert_eq!(
            fs::read(md.join("new").join(&name)).unwrap(),
            b"Return-Path: <a@b>\nSubject: x\n\nhello\n"
        );
        assert_eq!(fs::read_dir(md.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn over_quota_is_temporary_and_leaves_nothing() {
        let (_d, md) = mailbox();
        let mut body: &[u8] = &[b'x'; 200];
        let e = deliver(&md, Some(100), b"", &mut body).unwrap_err();
        assert_eq!(e.kind, postern_common::Kind::Temp);
        assert!(e.msg.contains("over quota"));
        assert_eq!(fs::read_dir(md.join("new")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(md.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn symlinked_and_foreign_mailboxes_are_refused() {
        let (d, md) = mailbox();
        let me = nix::unistd::geteuid().as_raw();
        check_mailbox(&d.path().join("u"), &md, me).unwrap();
        let e = check_mailbox(&d.path().join("u"), &md, me + 1).unwrap_err();
        assert_eq!(e.kind, postern_common::Kind::Temp);
        std::os::unix::fs::symlink(&md, d.path().join("link")).unwrap();
        let e = check_mailbox(&d.path().join("u"), &d.path().join("link"), me).unwrap_err();
        assert!(e.msg.contains("symbolic link"), "{}", e.msg);
    }

    /// A symbolic link, a file or someone else's directory anywhere in the mailbox is a
    /// misconfiguration: refused, but temporarily (4.3.5), so the mail waits in the
    /// queue until the admin fixes it instead of bouncing.
    #[test]
    fn unsafe_mailboxes_are_temporary_failures_naming_the_directory() {
        let me = nix::unistd::geteuid().as_raw();
        let check = |home: &Path, md: &Path, uid: u32, why: &str, dir: &Path| {
            let e = check_mailbox(home, md, uid).unwrap_err();
            assert_eq!(e.kind, postern_common::Kind::Temp, "{}", e.msg);
            assert!(e.msg.contains(why), "{}", e.msg);
            assert!(e.msg.contains(&dir.display().to_string()), "{}", e.msg);
            assert!(e.msg.ends_with("(#4.3.5)"), "{}", e.msg);
        };
        // The user directory is a link to a real mailbox.
        let (d, md) = mailbox();
        let home = d.path().join("home-link");
        std::os::unix::fs::symlink(d.path().join("u"), &home).unwrap();
        check(&home, &home.join("Maildir"), me, "symbolic link", &home);
        // Maildir itself is a link.
        let link = d.path().join("u/Maildir-link");
        std::os::unix::fs::symlink(&md, &link).unwrap();
        check(&d.path().join("u"), &link, me, "symbolic link", &link);
        // new/ is a link.
        let (d, md) = mailbox();
        fs::remove_dir(md.join("new")).unwrap();
        std::os::unix::fs::symlink(md.join("cur"), md.join("new")).unwrap();
        check(
            &d.path().join("u"),
            &md,
            me,
            "symbolic link",
            &md.join("new"),
        );
        // tmp/ is a file.
        let (d, md) = mailbox();
        fs::remove_dir(md.join("tmp")).unwrap();
        fs::write(md.join("tmp"), b"").unwrap();
        check(
            &d.path().join("u"),
            &md,
            me,
            "not a directory",
            &md.join("tmp"),
        );
        // new/ belongs to someone else (root, say, with the mailbox owner not root).
        let (d, md) = mailbox();
        let other = me + 1;
        let chowned = std::os::unix::fs::chown(d.path().join("u"), Some(other), None)
            .and_then(|_| std::os::unix::fs::chown(&md, Some(other), None))
            .and_then(|_| std::os::unix::fs::chown(md.join("tmp"), Some(other), None));
        if chowned.is_ok() {
            check(
                &d.path().join("u"),
                &md,
                other,
                &format!("belongs to uid {me}, not {other}"),
                &md.join("new"),
            );
        }
    }
}
