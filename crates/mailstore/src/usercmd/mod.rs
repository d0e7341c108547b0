//! `postern-user`: the admin's tool for virtual domains, mailboxes, passwords, quotas and
//! aliases. It edits the flat files (`control/domains`, `control/users`,
//! `control/aliases`) in place — comments and order kept — and recompiles the cdbs;
//! every change is checked as a whole before anything is written, under the database
//! lock. Passwords come from standard input only, never from the command line.
//!
//! This module is the command line (the verbs, their options, [`Ctx`]); the flat-file
//! editing is in `files`, the password prompt and mailbox creation in `mailbox`, and the
//! verbs in `domains`, `users` and `aliases`.

use crate::userdb;
use postern_common::control::Control;
use postern_common::{Error, Result, ResultExt};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

mod aliases;
mod domains;
mod files;
mod mailbox;
mod users;

use aliases::{alias_add, alias_del, alias_list};
use domains::{domain_add, domain_del, domain_list};
use users::{user_add, user_del, user_list, user_passwd, user_quota};

pub const PROG: &str = "postern-user";
pub const USAGE: &str = "postern-user [--owner NAME] domain add DOMAIN [--postmaster ADDRESS] [--reuse] | domain del DOMAIN | domain list | add ADDRESS [--quota BYTES] [--reuse] | passwd ADDRESS | del ADDRESS | list [DOMAIN] | quota ADDRESS BYTES | alias add ADDRESS TARGET... | alias del ADDRESS | alias list | compile";
/// The list of domains SMTP accepts mail for; `domain add|del` keep it in step.
pub const RCPTHOSTS: &str = "rcpthosts";
/// Where `del` moves a deleted mailbox's directory: `users/DOMAIN/.deleted/LOCAL.UNIXTIME`.
pub const DELETED_DIR: &str = ".deleted";
/// Options that take no value.
const FLAGS: &[&str] = &["--reuse"];
/// Most `.N` suffixes tried when a deleted mailbox's name is taken (same second).
const MAX_DELETED_SUFFIX: u32 = 100;

/// The command's state: where the instance is, the options, and the I/O.
pub struct Ctx<'a> {
    pub home: PathBuf,
    pub control: Control,
    pub owner: Option<String>,
    pub quota: Option<u64>,
    pub postmaster: Option<String>,
    /// `--reuse`: `add` may take over an existing mailbox directory.
    pub reuse: bool,
    pub input: &'a mut dyn BufRead,
    /// Whether standard input is a terminal (prompt twice, without echo).
    pub tty: bool,
    pub out: &'a mut dyn Write,
}

type Handler = fn(&mut Ctx, &[String]) -> Result<()>;

/// The verbs: the words that name them, the options they take, the handler.
const VERBS: &[(&[&str], &[&str], Handler)] = &[
    (
        &["domain", "add"],
        &["--postmaster", "--owner", "--reuse"],
        domain_add,
    ),
    (&["domain", "del"], &[], domain_del),
    (&["domain", "list"], &[], domain_list),
    (&["alias", "add"], &[], alias_add),
    (&["alias", "del"], &[], alias_del),
    (&["alias", "list"], &[], alias_list),
    (&["add"], &["--quota", "--owner", "--reuse"], user_add),
    (&["passwd"], &[], user_passwd),
    (&["del"], &[], user_del),
    (&["list"], &[], user_list),
    (&["quota"], &[], user_quota),
    (&["compile"], &[], compile),
];

fn usage() -> Error {
    Error::usage(USAGE)
}

/// The program: `postern-user ARGS` on the instance named by `POSTERN_HOME`.
pub fn main() -> Result<()> {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        args.push(a.into_string().map_err(|_| usage())?);
    }
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    run(
        &postern_common::home::postern_home(),
        &args,
        &mut input,
        tty,
        &mut out,
    )
}

/// Run one command against the instance at `home`.
pub fn run(
    home: &Path,
    args: &[String],
    input: &mut dyn BufRead,
    tty: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut words = Vec::new();
    let mut opts: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(name) = a.strip_prefix("--").filter(|n| !n.is_empty()) {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None if FLAGS.contains(&a.as_str()) => (name.to_string(), String::new()),
                None => {
                    i += 1;
                    (name.to_string(), args.get(i).ok_or_else(usage)?.clone())
                }
            };
            opts.push((format!("--{name}"), value));
        } else {
            words.push(a.clone());
        }
        i += 1;
    }
    let (path, allowed, handler) = VERBS
        .iter()
        .find(|(path, _, _)| {
            words.len() >= path.len() && path.iter().zip(&words).all(|(p, w)| p == w)
        })
        .ok_or_else(usage)?;
    let mut ctx = Ctx {
        home: home.to_path_buf(),
        control: Control::for_home(home),
        owner: None,
        quota: None,
        postmaster: None,
        reuse: false,
        input,
        tty,
        out,
    };
    for (name, value) in opts {
        if !allowed.contains(&name.as_str()) {
            return Err(usage());
        }
        match name.as_str() {
            "--owner" => ctx.owner = Some(value),
            "--postmaster" => ctx.postmaster = Some(value),
            "--reuse" if value.is_empty() => ctx.reuse = true,
            "--quota" => {
                let q: u64 = value.parse().map_err(|_| {
                    Error::usage(format!("--quota needs a number of bytes, not {value:?}"))
                })?;
                ctx.quota = Some(q).filter(|&q| q > 0);
            }
            _ => return Err(usage()),
        }
    }
    if !ctx.control.dir().is_dir() {
        return Err(Error::temp(format!(
            "no instance at {}: control/ does not exist",
            home.display()
        )));
    }
    handler(&mut ctx, &words[path.len()..])
}

fn say(ctx: &mut Ctx, text: impl std::fmt::Display) -> Result<()> {
    writeln!(ctx.out, "{text}").temp("unable to write to standard output")
}

fn args<const N: usize>(rest: &[String]) -> Result<[&str; N]> {
    if rest.len() != N {
        return Err(usage());
    }
    let mut a = [""; N];
    for (i, r) in rest.iter().enumerate() {
        a[i] = r;
    }
    Ok(a)
}

fn compile(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    args::<0>(rest)?;
    userdb::compile_all(&ctx.home)
}
