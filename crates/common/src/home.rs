//! Every program finds its instance through `POSTERN_HOME` — except a
//! program installed setuid or setgid, which must not let its caller choose the instance
//! (a caller-chosen `users.cdb` or queue would be the caller's key to the account the
//! program runs as). Such programs call [`trusted_home`].

use nix::unistd::{getegid, geteuid, getgid, getuid};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where a system install lives when `POSTERN_HOME` is not set.
pub const DEFAULT_HOME: &str = "/var/postern";

/// The home a setuid program falls back to when it is not installed in an instance's
/// `bin/`: `POSTERN_SETUID_HOME` at build time (`POSTERN_QUEUE_HOME`, its older name,
/// is honoured too), else [`DEFAULT_HOME`].
pub const COMPILED_HOME: &str = match option_env!("POSTERN_SETUID_HOME") {
    Some(h) => h,
    None => match option_env!("POSTERN_QUEUE_HOME") {
        Some(h) => h,
        None => DEFAULT_HOME,
    },
};

/// The instance directory: `$POSTERN_HOME`, or [`DEFAULT_HOME`].
pub fn postern_home() -> PathBuf {
    match std::env::var_os("POSTERN_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_HOME),
    }
}

/// Whether this process runs setuid or setgid (real and effective ids differ): then
/// nothing from the caller's environment may be trusted.
pub fn is_setid() -> bool {
    getuid() != geteuid() || getgid() != getegid()
}

/// The instance for a program that may be installed setuid or setgid.
///
/// Not setuid/setgid: [`postern_home`], as for every program. Setuid/setgid:
/// `POSTERN_HOME` is ignored; the instance is the one the running executable is installed
/// in (`HOME/bin/PROGRAM`, or `HOME/libexec/DIR/PROGRAM` where the install keeps the
/// setuid deliveries and password checker; from `/proc/self/exe`), provided every
/// directory from there up to `HOME` is owned by root and writable by nobody else — only
/// root can put a program there, so a caller cannot point it at an instance of their own
/// (not even through a hard link). Otherwise [`COMPILED_HOME`].
pub fn trusted_home() -> PathBuf {
    if !is_setid() {
        return postern_home();
    }
    std::fs::read_link("/proc/self/exe")
        .ok()
        .and_then(|exe| installed_home(&exe))
        .unwrap_or_else(|| PathBuf::from(COMPILED_HOME))
}

/// `HOME` for an executable at `HOME/bin/NAME` or `HOME/libexec/DIR/NAME`, when every
/// directory of that path below and including `HOME` is root's and not writable by
/// group or others.
pub fn installed_home(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    let mut chain = vec![dir];
    if dir.file_name()? != "bin" {
        let libexec = dir.parent()?;
        if libexec.file_name()? != "libexec" {
            return None;
        }
        chain.push(libexec);
    }
    let home = chain.last()?.parent()?;
    chain.push(home);
    let safe = |dir: &Path| {
        std::fs::symlink_metadata(dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0)
    };
    (home.is_absolute() && chain.iter().all(|d| safe(d))).then(|| home.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn not_setuid_means_postern_home() {
        assert!(!is_setid());
        assert_eq!(trusted_home(), postern_home());
    }

    #[test]
    fn installed_home_needs_a_safe_bin_directory() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = bin.join("postern-queue");
        let root = geteuid().is_root();
        assert_eq!(
            installed_home(&exe).is_some(),
            root,
            "only root's directories count"
        );
        assert_eq!(installed_home(&dir.path().join("sbin/postern-queue")), None);
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert_eq!(
            installed_home(&exe),
            None,
            "a group-writable bin/ is refused"
        );
        assert_eq!(installed_home(Path::new("bin/x")), None, "relative");
    }

    #[test]
    fn installed_home_from_libexec() {
        let dir = tempfile::tempdir().unwrap();
        let send = dir.path().join("libexec/send");
        std::fs::create_dir_all(&send).unwrap();
        for d in [dir.path(), &dir.path().join("libexec")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&send, std::fs::Permissions::from_mode(0o750)).unwrap();
        let exe = send.join("postern-remote");
        let want = geteuid().is_root().then(|| dir.path().to_path_buf());
        assert_eq!(installed_home(&exe), want);
        assert_eq!(installed_home(&dir.path().join("lib/send/x")), None);
        std::fs::set_permissions(&send, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert_eq!(installed_home(&exe), None, "a group-writable libexec/send");
    }
}
