//! `posternctl cert install CERT KEY`: put a new or renewed certificate chain and its key
//! into `control/tls/`, as an ACME client's deploy hook does (scripts/certbot-deploy-hook).
//!
//! - The pair is checked first with postern-tlsd's own loader: what it refuses is never
//!   installed, and the old pair stays in force.
//! - Each file is replaced atomically: a temporary file in `control/tls/`, created
//!   exclusively (no symlink followed) with its final mode (key 0600, certificate 0644)
//!   and owner (`control/tls/`'s: root in a system install, the instance's owner in a
//!   single-user one), written, fsynced, renamed into place; then the directory is
//!   fsynced. The key goes first, then the certificate; a connection that read one
//!   before and one after sees a mismatch, and postern-tlsd then reads both again.
//! - A renewal needs no restart: postern-tlsd reads the files for each connection. The
//!   first certificate does: the run scripts decide when a service starts whether
//!   postern-tlsd is in its chain (and the implicit-TLS services do not listen without
//!   one), so then every TLS service of the instance is restarted (`svc -t`).

use crate::services;
use postern_common::{Error, Result, ResultExt};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The services whose chain has postern-tlsd in it, restarted after a first certificate
/// (those that exist in `service/`).
pub const TLS_SERVICES: &[&str] = &["smtpd", "submission", "pop3d", "submissions", "pop3s"];
pub const CERT_MODE: u32 = 0o644;
pub const KEY_MODE: u32 = 0o600;

/// What `install` did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// There was no certificate before.
    pub first: bool,
    /// The leaf certificate's SHA-256, as `openssl x509 -fingerprint -sha256` writes it.
    pub fingerprint: String,
    /// Services restarted (first certificate only).
    pub restarted: Vec<String>,
    pub warnings: Vec<String>,
}

/// `AB:CD:…`, upper-case hex, as openssl prints fingerprints.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn read_source(path: &Path) -> Result<Vec<u8>> {
    let file = fs::File::open(path).temp(format!("unable to read {}", path.display()))?;
    let mut data = Vec::new();
    file.take(postern_tls::certs::MAX_PEM_FILE + 1)
        .read_to_end(&mut data)
        .temp(format!("unable to read {}", path.display()))?;
    if data.len() as u64 > postern_tls::certs::MAX_PEM_FILE {
        return Err(Error::perm(format!(
            "{}: larger than {} bytes",
            path.display(),
            postern_tls::certs::MAX_PEM_FILE
        )));
    }
    Ok(data)
}

/// Replace `dir/name` with `data`: temporary file with the final mode and owner, fsync,
/// rename. The directory is fsynced by the caller.
fn replace(
    dir: &Path,
    name: &str,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> Result<()> {
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("unable to remove {}", tmp.display()), &e))
            }
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&tmp)
            .temp(format!("unable to create {}", tmp.display()))?;
        if let Some((uid, gid)) = owner {
            nix::unistd::fchown(
                &f,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| Error::temp(format!("unable to chown {}: {e}", tmp.display())))?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))
            .temp(format!("unable to chmod {}", tmp.display()))?;
        f.write_all(data)
            .temp(format!("unable to write {}", tmp.display()))?;
        f.sync_all()
            .temp(format!("unable to write {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, &target).temp(format!("unable to rename {}", tmp.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Install `cert` (a PEM chain, leaf first) and `key` into `home`'s `control/tls/`, and
/// restart the TLS services if it is the first certificate.
pub fn install(home: &Path, cert: &Path, key: &Path) -> Result<Outcome> {
    let cert_pem = read_source(cert)?;
    let key_pem = read_source(key)?;
    // What postern-tlsd would refuse is never installed.
    postern_tls::certs::load(cert, key).map_err(|e| Error::perm(e.msg))?;
    let der = postern_tls::certs::leaf_der(cert).map_err(|e| Error::perm(e.msg))?;
    let dir = home.join("control").join("tls");
    let meta = fs::metadata(&dir).temp(format!(
        "unable to use {} (is this an instance? posternctl init makes it)",
        dir.display()
    ))?;
    if !meta.is_dir() {
        return Err(Error::perm(format!("{} is not a directory", dir.display())));
    }
    let (uid, gid) = (meta.uid(), meta.gid());
    // Root gives the files to the directory's owner; anyone else makes them their own
    // (and can only write there if it is theirs).
    let owner = postern_common::privilege::is_root().then_some((uid, gid));
    let mut outcome = Outcome {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        first: !dir.join("cert.pem").exists(),
        fingerprint: fingerprint(&der),
        ..Outcome::default()
    };
    replace(&dir, "key.pem", &key_pem, KEY_MODE, owner)?;
    replace(&dir, "cert.pem", &cert_pem, CERT_MODE, owner)?;
    postern_common::atomic::fsync_dir(&dir).temp(format!("unable to fsync {}", dir.display()))?;
    let installed = fs::metadata(&outcome.cert).temp("unable to stat the certificate")?;
    outcome.uid = installed.uid();
    outcome.gid = installed.gid();
    if outcome.first {
        let present: Vec<String> = TLS_SERVICES
            .iter()
            .filter(|s| home.join("service").join(s).join("run").is_file())
            .map(|s| s.to_string())
            .collect();
        for service in present {
            match services::svc(home, "t", services::Scope::Services, std::slice::from_ref(&service)) {
                Ok(()) => outcome.restarted.push(service),
                Err(e) => outcome.warnings.push(format!(
                    "unable to restart {service} ({}): run posternctl restart {service} once it is supervised",
                    e.msg
                )),
            }
        }
    }
    Ok(outcome)
}

/// `posternctl cert install`: install, then say what was done.
pub fn run(home: &Path, cert: &Path, key: &Path) -> Result<()> {
    let outcome = install(home, cert, key)?;
    println!(
        "posternctl: cert: installed {} (mode 0644) and {} (mode 0600), owner {}:{}",
        outcome.cert.display(),
        outcome.key.display(),
        outcome.uid,
        outcome.gid
    );
    println!(
        "posternctl: cert: sha256 fingerprint {}",
        outcome.fingerprint
    );
    for w in &outcome.warnings {
        postern_common::exit::warn("posternctl", w);
    }
    if outcome.first {
        println!(
            "posternctl: cert: first certificate: restarted {}",
            if outcome.restarted.is_empty() {
                "nothing".to_string()
            } else {
                outcome.restarted.join(" ")
            }
        );
    } else {
        println!("posternctl: cert: renewal: no restart needed (postern-tlsd reads the certificate for each connection)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_written_as_openssl_does() {
        let f = fingerprint(b"abc");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("BA:78:16:BF:"), "{f}");
    }
}
