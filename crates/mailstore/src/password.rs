//! Passwords: argon2id hashes in PHC string form, and the policy a new password must
//! pass before it is hashed. Each refusal is one line saying why.
//!
//! Policy, in order: at least [`MIN_LEN`] characters (at most [`MAX_LEN`]); not on the
//! shipped list of the 10 000 most common passwords (compared without case); not
//! containing the mailbox's own name; not too popular among this server's users (see
//! [`crate::popularity`]).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use postern_common::{Error, Result, ResultExt};
use std::io::Read;

/// Shortest password accepted.
pub const MIN_LEN: usize = 8;
/// Longest password accepted (the checkpassword interface allows 512 bytes in all).
pub const MAX_LEN: usize = 256;
/// Bytes of random salt per hash.
pub const SALT_LEN: usize = 16;

/// The shipped list, most common first, one per line, lower-case.
const COMMON: &str = include_str!("../data/common-passwords.txt");

/// `n` bytes from the kernel's random source.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .temp("unable to read /dev/urandom")?;
    Ok(buf)
}

/// Hash `password` with argon2id (the argon2 crate's defaults: m=19456 KiB, t=2, p=1).
pub fn hash(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes(SALT_LEN)?)
        .map_err(|e| Error::temp(format!("unable to encode salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::temp(format!("unable to hash password: {e}")))
}

/// Whether `password` matches the PHC string `phc`. A malformed string never matches.
pub fn verify(password: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A well-formed hash with the default cost that no password matches, verified in place
/// of a real one for unknown users, so that "no such user" takes as long as "wrong
/// password".
pub fn dummy_hash() -> String {
    format!(
        "$argon2id$v=19$m={},t={},p={}$cG9zdGVybi1kdW1teS1zYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST
    )
}

/// Whether `password` is on the shipped common-password list (case ignored).
pub fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    COMMON
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l == lower)
}

/// The checks that need no state: length, characters, the common list, the mailbox name.
pub fn check_static(password: &str, address: &str) -> Result<()> {
    let refuse = |why: String| Err(Error::perm(format!("password refused: {why}")));
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return refuse(format!("shorter than {MIN_LEN} characters"));
    }
    if password.len() > MAX_LEN {
        return refuse(format!("longer than {MAX_LEN} bytes"));
    }
    if password.chars().any(char::is_control) {
        return refuse("contains control characters".into());
    }
    if is_common(password) {
        return refuse("it is on the list of the 10000 most common passwords".into());
    }
    let local = address.split('@').next().unwrap_or("");
    if local.len() >= 3 && password.to_lowercase().contains(local) {
        return refuse("it contains the mailbox name".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify_round_trip() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify(b"correct horse battery", &h));
        assert!(!verify(b"correct horse batterY", &h));
        assert!(!verify(b"x", "not a hash"));
        assert_ne!(hash("correct horse battery").unwrap(), h, "salts differ");
    }

    #[test]
    fn dummy_hash_parses_and_matches_nothing() {
        let d = dummy_hash();
        assert!(PasswordHash::new(&d).is_ok());
        assert!(!verify(b"", &d));
        assert!(!verify(b"password", &d));
    }

    #[test]
    fn the_common_list_is_shipped() {
        let n = COMMON.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(n, 10000);
        assert!(is_common("123456"));
        assert!(is_common("PassWord"));
        assert!(is_common("trustno1"));
        assert!(!is_common("violet tractor umbrella"));
    }

    #[test]
    fn static_policy_says_why() {
        assert_eq!(
            check_static("short", "a@x.test").unwrap_err().msg,
            "password refused: shorter than 8 characters"
        );
        assert!(check_static("password1", "a@x.test")
            .unwrap_err()
            .msg
            .contains("most common"));
        assert!(check_static("alice-is-great", "alice@x.test")
            .unwrap_err()
            .msg
            .contains("mailbox name"));
        assert!(check_static("tab\there-ok?", "a@x.test").is_err());
        check_static("violet tractor umbrella", "alice@x.test").unwrap();
    }
}
