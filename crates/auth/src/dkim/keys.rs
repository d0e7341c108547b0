//! The DKIM keys of an instance, under `control/dkim/`:
//!
//! - `control/dkim/DOMAIN/SELECTOR.key`: the private key, PKCS#8 PEM (`openssl
//!   genpkey`'s format), RSA or Ed25519 — the key says which. Mode 0400, owned by the
//!   account that signs (postern-remote's): it is that account's alone, and the signer
//!   refuses a key any other account may read.
//! - `control/dkim/DOMAIN/selector`: the selector that signs DOMAIN's mail. Another key
//!   beside it stays until removed (rotation: publish the new key, switch, remove the
//!   old one once mail signed with it has been delivered).
//!
//! The directories are the signing account's, mode 0700.

use rsa::pkcs8::der::pem::{self, LineEnding};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, PrivateKeyInfo};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use postern_common::control::Control;

/// The keys' directory, under control/.
pub const DIR: &str = "dkim";
/// The file naming a domain's signing selector, in its directory.
pub const ACTIVE: &str = "selector";
/// A key file's name ends with this.
pub const KEY_SUFFIX: &str = ".key";
/// The PEM label of a PKCS#8 private key.
const PEM_LABEL: &str = "PRIVATE KEY";
/// The size of a new RSA key.
pub const RSA_BITS: usize = 2048;
/// The largest key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// The OIDs of PKCS#8's algorithm field.
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

/// The two signing algorithms of RFC 6376 and RFC 8463 that receivers verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// rsa-sha256 (the default: every verifier has it).
    Rsa,
    /// ed25519-sha256 (smaller, not yet verified everywhere: sign with both).
    Ed25519,
}

impl KeyType {
    /// The name in `k=` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// `rsa` or `ed25519`.
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "rsa" => Some(KeyType::Rsa),
            "ed25519" => Some(KeyType::Ed25519),
            _ => None,
        }
    }
}

/// A private key of a domain and selector.
#[derive(Clone)]
pub struct Key {
    pub domain: String,
    pub selector: String,
    pub kind: KeyType,
    /// The PKCS#8 DER.
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("kind", &self.kind)
            .field("pkcs8", &"(hidden)")
            .finish()
    }
}

impl Key {
    /// A new key of `kind` for `domain` and `selector`.
    pub fn generate(domain: &str, selector: &str, kind: KeyType) -> Result<Key, String> {
        let pkcs8 = match kind {
            KeyType::Rsa => {
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                    .map_err(|e| format!("unable to make an RSA key: {e}"))?;
                key.to_pkcs8_der()
                    .map_err(|e| format!("unable to encode the RSA key: {e}"))?
                    .as_bytes()
                    .to_vec()
            }
            KeyType::Ed25519 => mail_auth::common::crypto::Ed25519Key::generate_pkcs8()
                .map_err(|e| format!("unable to make an Ed25519 key: {e}"))?,
        };
        Ok(Key {
            domain: domain.to_string(),
            selector: selector.to_string(),
            kind,
            pkcs8,
        })
    }

    /// The key in a PKCS#8 DER, its type read from the DER.
    pub fn from_pkcs8(domain: &str, selector: &str, pkcs8: Vec<u8>) -> Result<Key, String> {
        let info = PrivateKeyInfo::try_from(pkcs8.as_slice())
            .map_err(|e| format!("not a PKCS#8 private key: {e}"))?;
        let kind = match info.algorithm.oid.to_string().as_str() {
            OID_RSA => KeyType::Rsa,
            OID_ED25519 => KeyType::Ed25519,
            other => {
                return Err(format!(
                    "a key of algorithm {other}, neither RSA nor Ed25519"
                ))
            }
        };
        Ok(Key {
            domain: domain.to_string(),
            selector: selector.to_string(),
            kind,
            pkcs8,
        })
    }

    /// The key from its PEM text.
    pub fn from_pem(domain: &str, selector: &str, text: &[u8]) -> Result<Key, String> {
        let (label, der) = pem::decode_vec(text).map_err(|e| format!("not a PEM file: {e}"))?;
        if label != PEM_LABEL {
            return Err(format!("a PEM \"{label}\", not a \"{PEM_LABEL}\""));
        }
        Key::from_pkcs8(domain, selector, der)
    }

    /// The key as PEM text.
    pub fn pem(&self) -> String {
        pem::encode_string(PEM_LABEL, LineEnding::LF, &self.pkcs8).unwrap_or_default()
    }

    /// The public key as DKIM's `p=` carries it: an RSA key's SubjectPublicKeyInfo DER
    /// (what `openssl rsa -pubout` gives and every verifier reads), an Ed25519 key's 32
    /// bytes (RFC 8463).
    pub fn public_key(&self) -> Result<Vec<u8>, String> {
        match self.kind {
            KeyType::Rsa => {
                let key = rsa::RsaPrivateKey::from_pkcs8_der(&self.pkcs8)
                    .map_err(|e| format!("a broken RSA key: {e}"))?;
                Ok(key
                    .to_public_key()
                    .to_public_key_der()
                    .map_err(|e| format!("unable to encode the public key: {e}"))?
                    .as_bytes()
                    .to_vec())
            }
            KeyType::Ed25519 => Ok(
                mail_auth::common::crypto::Ed25519Key::from_pkcs8_maybe_unchecked_der(&self.pkcs8)
                    .map_err(|e| format!("a broken Ed25519 key: {e}"))?
                    .public_key(),
            ),
        }
    }
}

/// `control/dkim/DOMAIN`.
pub fn domain_dir(control: &Control, domain: &str) -> PathBuf {
    control.path(DIR).join(domain)
}

/// `control/dkim/DOMAIN/SELECTOR.key`.
pub fn key_path(control: &Control, domain: &str, selector: &str) -> PathBuf {
    domain_dir(control, domain).join(format!("{selector}{KEY_SUFFIX}"))
}

/// A domain name as a directory name: lowercase letters, digits, `-`, `_` and inner
/// dots, no empty label.
pub fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && d.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
        })
}

/// A selector: one or more DNS labels of letters, digits, `-` and `_` (RFC 6376 3.1),
/// lowercase here so it is also a file name that cannot clash.
pub fn valid_selector(s: &str) -> bool {
    valid_domain(s) && s != ACTIVE
}

/// The domains with a key directory, sorted.
pub fn domains(control: &Control) -> Result<Vec<String>, String> {
    names(control.path(DIR), |n, is_dir| is_dir && valid_domain(n))
}

/// The selectors of `domain` with a key file, sorted.
pub fn selectors(control: &Control, domain: &str) -> Result<Vec<String>, String> {
    Ok(names(domain_dir(control, domain), |n, is_dir| {
        !is_dir && n.ends_with(KEY_SUFFIX)
    })?
    .into_iter()
    .map(|n| n.trim_end_matches(KEY_SUFFIX).to_string())
    .filter(|s| valid_selector(s))
    .collect())
}

fn names(dir: PathBuf, keep: impl Fn(&str, bool) -> bool) -> Result<Vec<String>, String> {
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("unable to read {}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| format!("unable to read {}: {e}", dir.display()))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let Some(n) = entry.file_name().to_str() {
            if keep(n, is_dir) {
                out.push(n.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The selector that signs `domain`'s mail (`control/dkim/DOMAIN/selector`), if any.
pub fn active(control: &Control, domain: &str) -> Result<Option<String>, String> {
    let path = domain_dir(control, domain).join(ACTIVE);
    match fs::read_to_string(&path) {
        Ok(s) => {
            let s = s.trim().to_string();
            if valid_selector(&s) {
                Ok(Some(s))
            } else {
                Err(format!("{}: not a selector", path.display()))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("unable to read {}: {e}", path.display())),
    }
}

/// Read the key of `domain` and `selector`, refusing a file that an account other than
/// its owner may read or write.
pub fn load(control: &Control, domain: &str, selector: &str) -> Result<Key, String> {
    let path = key_path(control, domain, selector);
    let file =
        fs::File::open(&path).map_err(|e| format!("unable to open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("unable to stat {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is mode {:o}: a signing key must be its owner's alone (chmod 400)",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_KEY_FILE), &mut text)
        .map_err(|e| format!("unable to read {}: {e}", path.display()))?;
    Key::from_pem(domain, selector, &text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The owner to give new files and directories (the signing account), or none to keep
/// the creator's.
pub type Owner = Option<(nix::unistd::Uid, nix::unistd::Gid)>;

fn own(path: &std::path::Path, owner: Owner) -> Result<(), String> {
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("unable to chown {}: {e}", path.display()))?;
    }
    Ok(())
}

fn make_dir(path: &std::path::Path, owner: Owner) -> Result<(), String> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("unable to create {}: {e}", path.display())),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("unable to chmod {}: {e}", path.display()))?;
    own(path, owner)
}

/// Write a new key file (never over an existing one), mode 0400, owned by `owner`.
pub fn save(control: &Control, key: &Key, owner: Owner) -> Result<PathBuf, String> {
    make_dir(&control.path(DIR), owner)?;
    make_dir(&domain_dir(control, &key.domain), owner)?;
    let path = key_path(control, &key.domain, &key.selector);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&path)
        .map_err(|e| format!("unable to create {}: {e}", path.display()))?;
    f.write_all(key.pem().as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("unable to write {}: {e}", path.display()))?;
    own(&path, owner)?;
    Ok(path)
}

/// Make `selector` the one that signs `domain`'s mail.
pub fn set_active(
    control: &Control,
    domain: &str,
    selector: &str,
    owner: Owner,
) -> Result<(), String> {
    let dir = domain_dir(control, domain);
    let tmp = dir.join(format!(".{ACTIVE}.tmp"));
    let path = dir.join(ACTIVE);
    fs::write(&tmp, format!("{selector}\n"))
        .and_then(|_| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)))
        .map_err(|e| format!("unable to write {}: {e}", tmp.display()))?;
    own(&tmp, owner)?;
    fs::rename(&tmp, &path).map_err(|e| format!("unable to rename to {}: {e}", path.display()))
}

/// Remove a key that no longer signs.
pub fn remove(control: &Control, domain: &str, selector: &str) -> Result<(), String> {
    if active(control, domain)?.as_deref() == Some(selector) {
        return Err(format!(
            "{selector} signs {domain}'s mail: make another selector the signing one first"
        ));
    }
    let path = key_path(control, domain, selector);
    fs::remove_file(&path).map_err(|e| format!("unable to remove {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_and_know_their_type() {
        for kind in [KeyType::Ed25519, KeyType::Rsa] {
            let k = Key::generate("example.test", "s1", kind).unwrap();
            let back = Key::from_pem("example.test", "s1", k.pem().as_bytes()).unwrap();
            assert_eq!(back.kind, kind);
            assert_eq!(back.pkcs8, k.pkcs8);
            let p = k.public_key().unwrap();
            match kind {
                KeyType::Ed25519 => assert_eq!(p.len(), 32),
                // SubjectPublicKeyInfo of a 2048-bit key.
                KeyType::Rsa => assert_eq!(p.len(), 294),
            }
        }
    }

    #[test]
    fn saved_keys_are_listed_loaded_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let control = Control::at(dir.path());
        let k = Key::generate("example.test", "s1", KeyType::Ed25519).unwrap();
        let path = save(&control, &k, None).unwrap();
        assert!(save(&control, &k, None).is_err(), "never over a key");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o400);
        assert_eq!(domains(&control).unwrap(), vec!["example.test"]);
        assert_eq!(selectors(&control, "example.test").unwrap(), vec!["s1"]);
        assert_eq!(active(&control, "example.test").unwrap(), None);
        set_active(&control, "example.test", "s1", None).unwrap();
        assert_eq!(
            active(&control, "example.test").unwrap().as_deref(),
            Some("s1")
        );
        assert_eq!(load(&control, "example.test", "s1").unwrap().pkcs8, k.pkcs8);
        assert!(
            remove(&control, "example.test", "s1").is_err(),
            "the signing one stays"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        let e = load(&control, "example.test", "s1").unwrap_err();
        assert!(e.contains("mode 440"), "{e}");
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_domain("example.test"));
        assert!(!valid_domain("../x"));
        assert!(!valid_domain("Example.test"));
        assert!(!valid_domain("a..b"));
        assert!(valid_selector("s2026-12"));
        assert!(!valid_selector("selector"));
        assert!(!valid_selector("a/b"));
    }
}
