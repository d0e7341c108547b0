//! `postern-softlimit opts child...`: set soft resource limits, then exec the child —
//! daemontools' softlimit. The seed paper's run script put qmail-smtpd under
//! `softlimit -m 8000000`; ours does the same for the SMTP chain.
//!
//! A value is a number, `=` (raise the soft limit to the hard limit) or `unlimited`
//! (the same as `=` when the hard limit is unlimited). A number above the hard limit is
//! lowered to it, as the classic softlimit does, rather than failing.

use crate::chain;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use postern_common::getopt;
use postern_common::{Error, Result, ResultExt};
use std::ffi::OsString;

pub const USAGE: &str = "postern-softlimit [-a allbytes] [-c corebytes] [-d databytes] [-f filebytes] [-l lockbytes] [-m membytes] [-o openfiles] [-p processes] [-r residentbytes] [-s stackbytes] [-t cpusecs] child";

/// What an option letter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Number(u64),
    /// `=` or `unlimited`: as high as the hard limit allows.
    Hard,
}

/// The resources each letter sets (`-m` sets every memory limit at once).
pub fn resources(letter: char) -> &'static [Resource] {
    match letter {
        'a' => &[Resource::RLIMIT_AS],
        'c' => &[Resource::RLIMIT_CORE],
        'd' => &[Resource::RLIMIT_DATA],
        'f' => &[Resource::RLIMIT_FSIZE],
        'l' => &[Resource::RLIMIT_MEMLOCK],
        'm' => &[
            Resource::RLIMIT_AS,
            Resource::RLIMIT_DATA,
            Resource::RLIMIT_STACK,
            Resource::RLIMIT_MEMLOCK,
        ],
        'o' => &[Resource::RLIMIT_NOFILE],
        'p' => &[Resource::RLIMIT_NPROC],
        'r' => &[Resource::RLIMIT_RSS],
        's' => &[Resource::RLIMIT_STACK],
        't' => &[Resource::RLIMIT_CPU],
        _ => &[],
    }
}

pub fn parse_value(letter: char, text: &str) -> Result<Value> {
    match text {
        "=" | "unlimited" => Ok(Value::Hard),
        _ => text.parse::<u64>().map(Value::Number).map_err(|_| {
            Error::usage(format!(
                "-{letter} needs a number, = or unlimited, not {text:?}"
            ))
        }),
    }
}

/// Lower the soft limit of `resource` to `value` (clamped to the hard limit).
pub fn apply(resource: Resource, value: Value) -> Result<()> {
    let (_, hard) = getrlimit(resource).temp("unable to read resource limit")?;
    let soft = match value {
        Value::Hard => hard,
        Value::Number(n) => n.min(hard),
    };
    setrlimit(resource, soft, hard).temp(format!("unable to set {resource:?}"))
}

pub fn main() -> Result<()> {
    let (opts, child) = getopt::parse(&getopt::args(), "a:c:d:f:l:m:o:p:r:s:t:", USAGE)?;
    if child.is_empty() {
        return Err(Error::usage(USAGE));
    }
    let mut settings = Vec::new();
    for opt in &opts {
        let value = parse_value(opt.letter, opt.text()?)?;
        settings.push((opt.letter, value));
    }
    for (letter, value) in settings {
        for &resource in resources(letter) {
            apply(resource, value)?;
        }
    }
    chain::exec(&child as &[OsString])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(
            parse_value('m', "8000000").unwrap(),
            Value::Number(8_000_000)
        );
        assert_eq!(parse_value('m', "=").unwrap(), Value::Hard);
        assert_eq!(parse_value('o', "unlimited").unwrap(), Value::Hard);
        assert!(parse_value('m', "8M").is_err());
    }

    #[test]
    fn every_letter_sets_something() {
        for letter in "acdflmoprst".chars() {
            assert!(!resources(letter).is_empty(), "-{letter}");
        }
        assert_eq!(resources('m').len(), 4);
    }
}
