//! Option parsing with the classic getopt rules the DJB tools use, for the programs
//! whose command lines must match theirs exactly (`postern-svc -dx dir`, `postern-softlimit
//! -m 8000000 prog`): options come first, letters may be grouped, an option's argument
//! may be attached (`-m8000`) or the next word, `--` ends options, and the first word
//! that is not an option ends them too (so a child's own options pass through).
//! The order of the letters is kept, which `svc` needs.

use crate::exit::{Error, Result};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// One parsed option: its letter and, for letters that take one, its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub letter: char,
    pub arg: Option<OsString>,
}

impl Opt {
    /// The argument as UTF-8 text (for numbers and names).
    pub fn text(&self) -> Result<&str> {
        self.arg
            .as_deref()
            .and_then(|a| a.to_str())
            .ok_or_else(|| Error::usage(format!("-{} needs a text argument", self.letter)))
    }

    /// The argument as a whole number.
    pub fn number(&self) -> Result<u64> {
        let text = self.text()?;
        text.parse()
            .map_err(|_| Error::usage(format!("-{} needs a number, not {text:?}", self.letter)))
    }
}

/// Parse `args` (without the program name) against `spec` — the accepted letters, each
/// followed by `:` if it takes an argument. Returns the options in order and the operands.
/// An unknown letter or a missing argument is a usage error whose text is `usage`.
pub fn parse(args: &[OsString], spec: &str, usage: &str) -> Result<(Vec<Opt>, Vec<OsString>)> {
    let takes_arg = |c: char| -> Option<bool> {
        let mut chars = spec.chars().peekable();
        while let Some(s) = chars.next() {
            let has_arg = chars.peek() == Some(&':');
            if has_arg {
                chars.next();
            }
            if s == c {
                return Some(has_arg);
            }
        }
        None
    };
    let mut opts = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_bytes();
        if word == b"--" {
            i += 1;
            break;
        }
        if word.len() < 2 || word[0] != b'-' {
            break;
        }
        let mut j = 1;
        while j < word.len() {
            let c = word[j] as char;
            match takes_arg(c) {
                None => return Err(Error::usage(usage.to_string())),
                Some(false) => {
                    opts.push(Opt {
                        letter: c,
                        arg: None,
                    });
                    j += 1;
                }
                Some(true) => {
                    let arg = if j + 1 < word.len() {
                        OsString::from(std::ffi::OsStr::from_bytes(&word[j + 1..]))
                    } else {
                        i += 1;
                        match args.get(i) {
                            Some(a) => a.clone(),
                            None => return Err(Error::usage(usage.to_string())),
                        }
                    };
                    opts.push(Opt {
                        letter: c,
                        arg: Some(arg),
                    });
                    j = word.len();
                }
            }
        }
        i += 1;
    }
    Ok((opts, args[i..].to_vec()))
}

/// The process's arguments without the program name.
pub fn args() -> Vec<OsString> {
    std::env::args_os().skip(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn grouped_letters_keep_their_order() {
        let (opts, rest) = parse(&words("-dx -u svc1 svc2"), "udxo", "u").unwrap();
        let letters: String = opts.iter().map(|o| o.letter).collect();
        assert_eq!(letters, "dxu");
        assert_eq!(rest, words("svc1 svc2"));
    }

    #[test]
    fn arguments_attached_or_separate() {
        let (opts, rest) = parse(&words("-m8000 -a 9000 prog -m 1"), "m:a:", "u").unwrap();
        assert_eq!(opts[0].number().unwrap(), 8000);
        assert_eq!(opts[1].number().unwrap(), 9000);
        assert_eq!(rest, words("prog -m 1"));
    }

    #[test]
    fn double_dash_and_lone_dash() {
        let (opts, rest) = parse(&words("-u -- -d"), "ud", "u").unwrap();
        assert_eq!(opts.len(), 1);
        assert_eq!(rest, words("-d"));
        let (opts, rest) = parse(&words("- x"), "ud", "u").unwrap();
        assert!(opts.is_empty());
        assert_eq!(rest, words("- x"));
    }

    #[test]
    fn unknown_and_missing_are_usage_errors() {
        let e = parse(&words("-z x"), "ud", "usage text").unwrap_err();
        assert_eq!(e.kind, crate::exit::Kind::Usage);
        assert_eq!(e.msg, "usage text");
        assert!(parse(&words("-m"), "m:", "u").is_err());
        let (opts, _) = parse(&words("-m x"), "m:", "u").unwrap();
        assert!(opts[0].number().is_err());
    }
}
