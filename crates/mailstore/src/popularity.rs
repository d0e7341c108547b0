//! "Popularity is everything" (Schechter, Herley, Mitzenmacher, HotSec 2010): refuse a
//! password that too many of this server's users already chose, without keeping a list
//! of passwords anyone could read back.
//!
//! Each password set through `postern-user` adds one to the count of its *token*: the
//! first [`TOKEN_BITS`] bits of argon2id(password) keyed with the instance secret
//! `control/popularity.key`. `control/popularity` holds only `TOKEN COUNT` lines. Without
//! the key the tokens say nothing; with it, guessing still costs one argon2id per guess,
//! and the truncation makes every match ambiguous (many passwords share a token).
//!
//! A password is refused when its token's count has reached `control/popularitylimit`
//! (default [`DEFAULT_LIMIT`]; 0 switches the check off). Counts only grow: a password
//! once chosen by that many users stays refused, even after they change it — the
//! server cannot tell which token an old password had, and that is the point.

use postern_common::control::Control;
use postern_common::{Error, Result, ResultExt};
use std::collections::BTreeMap;
use std::fs;
use std::io;

pub const KEY_FILE: &str = "popularity.key";
pub const COUNT_FILE: &str = "popularity";
pub const LIMIT_FILE: &str = "popularitylimit";
/// Refuse when this many users already chose the password.
pub const DEFAULT_LIMIT: u64 = 2;
/// Bits of the keyed hash kept per password.
pub const TOKEN_BITS: u32 = 20;
/// Bytes of the instance secret.
pub const KEY_LEN: usize = 32;
/// Most distinct tokens the count file can hold (all of them, 2^TOKEN_BITS).
pub const MAX_TOKENS: usize = 1 << TOKEN_BITS;
/// Fixed salt: the key, not the salt, makes tokens instance-specific.
const SALT: &[u8] = b"postern-popularity-v1";

fn key(control: &Control, create: bool) -> Result<Option<Vec<u8>>> {
    let path = control.path(KEY_FILE);
    match fs::read(&path) {
        Ok(k) if k.len() == KEY_LEN => return Ok(Some(k)),
        Ok(_) => {
            return Err(Error::temp(format!(
                "control/{KEY_FILE}: not a {KEY_LEN}-byte key"
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("unable to read control/{KEY_FILE}"), &e)),
    }
    let k = crate::password::random_bytes(KEY_LEN)?;
    postern_common::atomic::write_atomic(&path, &k, 0o600)
        .temp(format!("unable to write control/{KEY_FILE}"))?;
    Ok(Some(k))
}

/// The token of `password` under `key`, as 5 hex digits.
fn token(key: &[u8], password: &str) -> Result<String> {
    let argon = argon2::Argon2::new_with_secret(
        key,
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::default(),
    )
    .map_err(|e| Error::temp(format!("popularity: {e}")))?;
    let mut out = [0u8; 32];
    argon
        .hash_password_into(password.as_bytes(), SALT, &mut out)
        .map_err(|e| Error::temp(format!("popularity: {e}")))?;
    let v = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) >> (32 - TOKEN_BITS);
    Ok(format!("{v:05x}"))
}

fn counts(control: &Control) -> Result<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    for l in control.list(COUNT_FILE)? {
        let bad = || {
            Error::temp(format!(
                "control/{COUNT_FILE}:{}: expected TOKEN COUNT",
                l.number
            ))
        };
        let (t, c) = l.text.split_once(' ').ok_or_else(bad)?;
        let c: u64 = c.trim().parse().map_err(|_| bad())?;
        if t.len() != 5 || !t.bytes().all(|b| b.is_ascii_hexdigit()) || map.len() >= MAX_TOKENS {
            return Err(bad());
        }
        map.insert(t.to_string(), c);
    }
    Ok(map)
}

/// The refusal limit from `control/popularitylimit`.
pub fn limit(control: &Control) -> Result<u64> {
    control.number(LIMIT_FILE, DEFAULT_LIMIT)
}

/// Refuse `password` if its count has reached the limit. Returns its token for
/// [`record`], or `None` when the check is off.
pub fn check(control: &Control, password: &str) -> Result<Option<String>> {
    let limit = limit(control)?;
    if limit == 0 {
        return Ok(None);
    }
    let key = key(control, true)?.unwrap_or_default();
    let t = token(&key, password)?;
    let n = counts(control)?.get(&t).copied().unwrap_or(0);
    if n >= limit {
        return Err(Error::perm(format!(
            "password refused: too popular on this server ({n} other users already chose it or one like it)"
        )));
    }
    Ok(Some(t))
}

/// Count one more user for `token`. The caller holds the database lock.
pub fn record(control: &Control, token: &str) -> Result<()> {
    let mut map = counts(control)?;
    *map.entry(token.to_string()).or_insert(0) += 1;
    let mut text = String::from("# token count; see docs/postern-user.md (popularity)\n");
    for (t, c) in &map {
        text.push_str(&format!("{t} {c}\n"));
    }
    postern_common::atomic::write_atomic(&control.path(COUNT_FILE), text.as_bytes(), 0o600)
        .temp(format!("unable to write control/{COUNT_FILE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_user_with_the_same_password_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Control::at(dir.path());
        for _ in 0..2 {
            let t = check(&c, "purple monkey dishwasher").unwrap().unwrap();
            record(&c, &t).unwrap();
        }
        let e = check(&c, "purple monkey dishwasher").unwrap_err();
        assert!(e.msg.contains("too popular"), "{}", e.msg);
        assert!(check(&c, "another fine phrase").is_ok());
        let text = fs::read_to_string(dir.path().join(COUNT_FILE)).unwrap();
        assert!(!text.contains("purple"));
        use std::os::unix::fs::PermissionsExt;
        for f in [COUNT_FILE, KEY_FILE] {
            assert_eq!(
                fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o077,
                0,
                "{f}"
            );
        }
    }

    #[test]
    fn tokens_depend_on_the_key() {
        let a = token(&[1u8; 32], "pw-one-two").unwrap();
        assert_eq!(a, token(&[1u8; 32], "pw-one-two").unwrap());
        assert_ne!(a, token(&[2u8; 32], "pw-one-two").unwrap());
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn limit_zero_switches_it_off() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LIMIT_FILE), "0\n").unwrap();
        assert_eq!(check(&Control::at(dir.path()), "x").unwrap(), None);
    }
}
