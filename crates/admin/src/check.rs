//! `posternctl check`: parse every control file and rules file of an instance with the
//! parsers the daemons themselves use, and name every bad line — to be run before
//! `posternctl cdb` or a reload, so a typo is found by the admin and not by a client.
//!
//! Nothing is written. Each problem is one line, `control/FILE:LINE: why`; a summary
//! follows, and any problem makes the command fail (exit 100).
//!
//! The parsers are the real ones, never copies: `postern_ucspi::rules` (tcp.*),
//! `postern_mailstore::userdb` (domains, users, aliases), `postern_filter::scan::rules`
//! (filter.rules), `postern_filter::scan::engines` (scanners), `postern_filter::ratelimit`
//! (ratelimit), `postern_delivery::remote::route` (smtproutes),
//! `postern_mailstore::relayrecipients` and `postern_mailstore::verify`
//! (relayrecipients, verifyrecipients and the `verify*` settings),
//! `postern_common::resolvers::parse_server` (resolvers) and
//! `postern_common::control::Control::number` (the numbers). Where a parser stops at the
//! first bad line, the line is set aside and the parser run again, so every bad line is
//! found (up to [`MAX_PROBLEMS_PER_FILE`]).
//!
//! Then the daemons' own configuration loaders run — `postern_smtpd::config::Config::load`
//! and `postern_delivery::send::config::Config::load` — because a file can parse and
//! still break a daemon (an `authsenders` line without `:`, a `timeoutsmtpd` over a day):
//! smtpd would answer 421 to every client. They stop at their first problem, so each adds
//! at most one, and none that the checks above already named.

use postern_common::control::{Control, Line};
use postern_common::logline::printable;
use postern_common::{Error, Result};
use std::path::Path;

/// Most problems reported for one file (a file full of errors needs one look, not 10 000
/// lines).
pub const MAX_PROBLEMS_PER_FILE: usize = 50;

/// Control files that hold one whole number, besides every `timeout*` and `concurrency*`.
pub const NUMBER_FILES: &[&str] = &[
    "databytes",
    "queuelifetime",
    "maxrcpts",
    "maxunknownrcpts",
    "unknownrcptdelay",
    "authfaildelay",
    "minrate",
    "minratewindow",
    "popularitylimit",
    "verifypositive",
    "verifynegative",
    "verifytempfail",
    "verifycachesize",
    "verifytimeout",
    "pregreetttl",
    "pregreetpassttl",
    "authtimeout",
    "authchecks",
    "dmarcreject",
    "spfreject",
    "refuseforgedhosted",
];

/// What `check` found.
#[derive(Debug, Default)]
pub struct Findings {
    /// One `control/FILE:LINE: why` per problem.
    pub problems: Vec<String>,
    /// How many files were looked at (present ones).
    pub checked: usize,
    /// Things that work but should not be so (printed, not failing).
    pub warnings: Vec<String>,
}

/// Check the instance at `home`.
pub fn check(home: &Path) -> Findings {
    let control = Control::for_home(home);
    let mut f = Findings::default();
    for name in rule_files(&control) {
        f.checked += 1;
        f.problems.extend(rules_file(&control, &name));
    }
    user_database(&control, &mut f);
    if exists(&control, "filter.rules") {
        f.checked += 1;
        f.problems.extend(filter_rules(&control));
    }
    per_line(&control, "scanners", &mut f, |line| {
        postern_filter::scan::engines::parse(std::slice::from_ref(line)).map(|_| ())
    });
    per_line(&control, "spamactions", &mut f, |line| {
        postern_filter::scan::spam::Actions::parse(std::slice::from_ref(line)).map(|_| ())
    });
    per_line(&control, "spamoutbound", &mut f, |line| {
        postern_filter::scan::spam::Outbound::parse(Some(&line.text)).map(|_| ())
    });
    per_line(
        &control,
        postern_mailstore::relayrecipients::SOURCE,
        &mut f,
        |line| postern_mailstore::relayrecipients::parse_line(line).map(|_| ()),
    );
    per_line(
        &control,
        postern_mailstore::verify::SOURCE,
        &mut f,
        |line| postern_mailstore::verify::parse_line(line).map(|_| ()),
    );
    gateway_warnings(home, &control, &mut f);
    per_line(&control, "smtproutes", &mut f, |line| {
        postern_delivery::remote::route::parse_line(line).map(|_| ())
    });
    verification(home, &control, &mut f);
    per_line(
        &control,
        "resolvers",
        &mut f,
        |line| match postern_common::resolvers::parse_server(&line.text) {
            Some(_) => Ok(()),
            None => Err(Error::perm(format!(
                "control/resolvers:{}: not ip[:port]: {}",
                line.number,
                printable(&line.text)
            ))),
        },
    );
    if exists(&control, postern_filter::ratelimit::policy::FILE) {
        f.checked += 1;
        if let Err(e) = postern_filter::ratelimit::policy::Settings::load(&control) {
            f.problems.push(e.msg);
        }
    }
    for name in number_files(&control) {
        f.checked += 1;
        if let Err(e) = control.number(&name, 0) {
            f.problems.push(e.msg);
        }
    }
    let smtpd = postern_smtpd::config::Config::load(&control).err();
    loader_problem(
        &mut f,
        smtpd,
        "postern-smtpd would refuse every connection with 421",
    );
    if exists(&control, "pregreetwait") {
        f.checked += 1;
        if let Err(e) = postern_ucspi::pregreet::Settings::load(&control, None) {
            f.problems.push(format!(
                "{} (postern-pregreet would close every SMTP connection)",
                e.msg
            ));
        }
    }
    let send = postern_delivery::send::config::Config::load(&control).err();
    loader_problem(&mut f, send, "postern-send would not start");
    f
}

/// The rcpthosts domains that accept every recipient (backscatter), and a
/// relayrecipients newer than its cdb: warnings, since mail flows either way.
fn gateway_warnings(home: &Path, control: &Control, f: &mut Findings) {
    let domains: Vec<String> = control
        .list("rcpthosts")
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.text.to_ascii_lowercase())
        .filter(|d| !d.starts_with('.'))
        .collect();
    for d in crate::audit::recipients::open_domains(home, &domains) {
        f.warnings.push(format!(
            "control/rcpthosts: accepts every recipient of {d}: backscatter (list its \
             addresses in control/relayrecipients, verify them with control/verifyrecipients, \
             or host it with postern-user)"
        ));
    }
    let source = control.path(postern_mailstore::relayrecipients::SOURCE);
    let compiled = control.path(postern_mailstore::relayrecipients::CDB);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let Some(s) = modified(&source) {
        if modified(&compiled).is_none_or(|c| c < s) {
            f.warnings.push(
                "control/relayrecipients: newer than relayrecipients.cdb: run posternctl cdb"
                    .to_string(),
            );
        }
    }
}

/// Recipient verification by callout (`verifyrecipients` and its settings), as
/// postern-smtpd and postern-verify read them. Problems: a setting postern-verify would
/// refuse (every verified recipient would get 451), a verified domain whose route
/// authenticates (postern-verify has no credentials: every recipient would get 450).
/// Warnings: a listed domain that is never verified — outside `rcpthosts`, hosted here,
/// or decided by `relayrecipients` — and a cache directory that is missing.
fn verification(home: &Path, control: &Control, f: &mut Findings) {
    use postern_mailstore::verify;
    if let Err(e) = verify::Settings::load(control) {
        loader_problem(
            f,
            Some(e),
            "postern-verify would not run: every verified recipient would get 451",
        );
    }
    let Ok(domains) = verify::domains(control) else {
        return; // its bad lines are named above
    };
    if domains.is_empty() {
        return;
    }
    let rcpthosts: Vec<String> = control
        .list("rcpthosts")
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.text.to_ascii_lowercase())
        .collect();
    let routes = control
        .list("smtproutes")
        .and_then(|l| postern_delivery::remote::route::parse(&l))
        .ok();
    for d in &domains {
        let never = |why: &str| format!("control/{}: {d} is never verified: {why}", verify::SOURCE);
        if !postern_smtpd::relay::rcpthosts_allows(d, &rcpthosts) {
            f.warnings.push(never("it is not in control/rcpthosts"));
        } else if postern_mailstore::is_hosted_domain(home, d).unwrap_or(false) {
            f.warnings
                .push(never("it is hosted here (the user database decides)"));
        } else if postern_mailstore::relayrecipients::governs(home, d).unwrap_or(false) {
            f.warnings.push(never(
                "control/relayrecipients lists its addresses, and decides alone",
            ));
        }
        if let Some(routes) = &routes {
            let (_, options) = postern_delivery::remote::route::lookup(routes, d);
            if let Some(name) = options.auth {
                f.problems.push(format!(
                    "control/{}: {d} is routed with auth={name}: postern-verify has no \
                     credentials and does not probe such a route (every recipient would get 450)",
                    verify::SOURCE
                ));
            }
        }
    }
    let cache = home.join(postern_mailstore::verifycache::DIR);
    if !cache.is_dir() {
        f.warnings.push(format!(
            "{} is missing: postern-verify keeps its answers there (posternctl init or \
             scripts/install makes it, owned by the network account, mode 0700)",
            cache.display()
        ));
    }
}

/// A daemon loader's error as a problem, `control/FILE[:LINE]: why (consequence)`,
/// unless an earlier check named it already (the loaders read the numbers too).
fn loader_problem(f: &mut Findings, err: Option<Error>, consequence: &str) {
    let Some(e) = err else { return };
    if f.problems.contains(&e.msg) {
        return;
    }
    f.problems.push(format!("{} ({consequence})", e.msg));
}

/// `posternctl check`: print the problems and a summary; fail when there are any.
pub fn run(home: &Path) -> Result<()> {
    if !home.join("control").is_dir() {
        return Err(Error::perm(format!(
            "no instance at {}: {} is not a directory",
            home.display(),
            home.join("control").display()
        )));
    }
    let f = check(home);
    for w in &f.warnings {
        println!("warning: {w}");
    }
    for p in &f.problems {
        println!("{p}");
    }
    match f.problems.len() {
        0 => {
            println!(
                "posternctl: check: {} control files, no problems",
                f.checked
            );
            Ok(())
        }
        n => Err(Error::perm(format!(
            "check: {n} problem(s) in {} control files; fix them before posternctl cdb",
            f.checked
        ))),
    }
}

fn exists(control: &Control, name: &str) -> bool {
    control.path(name).exists()
}

/// The access-rule sources: the three of `posternctl cdb`, and any other `tcp.NAME`.
fn rule_files(control: &Control) -> Vec<String> {
    let mut names: Vec<String> = crate::cdb_compile::RULE_FILES
        .iter()
        .map(|s| s.to_string())
        .collect();
    for name in control_names(control) {
        if name.starts_with("tcp.")
            && !name.ends_with(".cdb")
            && !name.ends_with(".tmp")
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names.retain(|n| exists(control, n));
    names
}

/// The number files present: [`NUMBER_FILES`], `timeout*`, `concurrency*`.
fn number_files(control: &Control) -> Vec<String> {
    let mut names: Vec<String> = NUMBER_FILES.iter().map(|s| s.to_string()).collect();
    for name in control_names(control) {
        if (name.starts_with("timeout") || name.starts_with("concurrency"))
            && !name.contains('.')
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names.retain(|n| control.path(n).is_file());
    names.sort();
    names
}

/// The names of the files in `control/`, sorted.
fn control_names(control: &Control) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(control.dir())
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// One tcprules source, line by line through `postern_ucspi::rules::parse_line`.
fn rules_file(control: &Control, name: &str) -> Vec<String> {
    let bytes = match std::fs::read(control.path(name)) {
        Ok(b) => b,
        Err(e) => {
            return vec![format!(
                "control/{name}: unable to read: {}",
                postern_common::exit::describe_io(&e)
            )]
        }
    };
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if let Err(why) = postern_ucspi::rules::parse_line(line) {
            let shown = &line[..line.len().min(200)];
            out.push(format!(
                "control/{name}:{}: {why}: {}",
                i + 1,
                printable(shown)
            ));
            if out.len() >= MAX_PROBLEMS_PER_FILE {
                break;
            }
        }
    }
    out
}

/// `domains`, `users` and `aliases`, checked together as `postern_mailstore` compiles
/// them; each bad line is set aside and the rest checked again.
fn user_database(control: &Control, f: &mut Findings) {
    use postern_mailstore::userdb::Sources;
    let names = ["domains", "users", "aliases"];
    let mut lists: Vec<Vec<Line>> = Vec::new();
    for name in names {
        if exists(control, name) {
            f.checked += 1;
        }
        match control.list(name) {
            Ok(l) => lists.push(l),
            Err(e) => {
                f.problems.push(e.msg);
                return;
            }
        }
    }
    for _ in 0..MAX_PROBLEMS_PER_FILE * names.len() {
        let Err(e) = Sources::parse(&lists[0], &lists[1], &lists[2]) else {
            return;
        };
        let at = names
            .iter()
            .enumerate()
            .find_map(|(i, n)| line_of(&e.msg, n).map(|l| (i, l)));
        f.problems.push(e.msg);
        let Some((i, number)) = at else { return };
        let before = lists[i].len();
        lists[i].retain(|l| l.number != number);
        if lists[i].len() == before {
            return;
        }
    }
}

/// The line number in a parser's `control/NAME:LINE: why` message.
fn line_of(msg: &str, name: &str) -> Option<usize> {
    let rest = msg.strip_prefix(&format!("control/{name}:"))?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    rest[digits.len()..].starts_with(':').then_some(())?;
    digits.parse().ok()
}

/// `filter.rules` through `postern_filter::scan::rules::parse`; after a bad line the parse goes
/// on from the next one (earlier lines blanked, so the numbers stay right).
fn filter_rules(control: &Control) -> Vec<String> {
    let text = match control.read("filter.rules") {
        Ok(Some(t)) => t,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![e.msg],
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let mut from = 0;
    let mut out = Vec::new();
    while from < lines.len() && out.len() < MAX_PROBLEMS_PER_FILE {
        let rest = "\n".repeat(from) + &lines[from..].join("\n");
        match postern_filter::scan::rules::parse(&rest) {
            Ok(_) => break,
            Err(e) => {
                let number = line_of(&e.msg, "filter.rules");
                out.push(e.msg);
                match number {
                    Some(n) if n > from => from = n,
                    _ => break,
                }
            }
        }
    }
    out
}

/// A file whose lines stand alone: each meaningful line through `parse`.
fn per_line(control: &Control, name: &str, f: &mut Findings, parse: impl Fn(&Line) -> Result<()>) {
    let lines = match control.lines(name) {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            f.checked += 1;
            f.problems.push(e.msg);
            return;
        }
    };
    f.checked += 1;
    let mut n = 0;
    for line in &lines {
        if let Err(e) = parse(line) {
            f.problems.push(e.msg);
            n += 1;
            if n >= MAX_PROBLEMS_PER_FILE {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn instance(files: &[(&str, &str)]) -> postern_testkit::TempDir {
        let dir = postern_testkit::tempdir();
        fs::create_dir(dir.path().join("control")).unwrap();
        for (name, text) in files {
            fs::write(dir.path().join("control").join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_clean_instance_has_no_problems() {
        let d = instance(&[
            ("tcp.smtp", "127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n"),
            ("databytes", "1000\n"),
            ("timeoutsmtpd", "300\n"),
            ("filter.rules", postern_filter::scan::rules::DEFAULT_RULES),
            ("resolvers", "127.0.0.1:53\n::1\n"),
            ("smtproutes", ":smarthost.test:2525\n"),
        ]);
        let f = check(d.path());
        assert_eq!(f.problems, Vec::<String>::new());
        assert_eq!(f.checked, 6);
    }

    #[test]
    fn every_bad_line_is_named() {
        let d = instance(&[
            ("tcp.smtp", "# ok\n1.2.3.4 allow\n:allow\n5.6.7.8:deny,=x\n"),
            ("databytes", "# max\nten\n"),
            ("concurrencyfoo", "x\n"),
            (
                "filter.rules",
                ".exe\t0\tExe\nbad line\n.com\t0\tCom\n([\tVirus-Subject\tbroken\n",
            ),
            ("scanners", "clamd:/run/x.sock\nsomething\n"),
            ("spamactions", "tag 5\ndrop 3\n"),
            ("spamoutbound", "maybe\n"),
            ("resolvers", "1.2.3.4\nnot-an-ip\n"),
            ("smtproutes", "example.test\n"),
            ("domains", "example.test\nbad domain\n"),
            ("users", "alice@example.test:plaintext:0\n"),
            ("ratelimit", "window 0\n"),
        ]);
        let f = check(d.path());
        let has = |prefix: &str| f.problems.iter().any(|p| p.starts_with(prefix));
        for prefix in [
            "control/tcp.smtp:2: ",
            "control/tcp.smtp:4: ",
            "control/databytes:2: not a whole number: ten",
            "control/concurrencyfoo:1: ",
            "control/filter.rules:2: ",
            "control/filter.rules:4: bad pattern",
            "control/scanners:2: ",
            "control/spamactions:2: expected tag, quarantine, reject or rspamd",
            "control/spamoutbound: expected skip, score or score SETTINGS",
            "control/resolvers:2: not ip[:port]",
            "control/smtproutes:1: ",
            "control/domains:2: ",
            "control/users:1: ",
            "control/ratelimit:1: ",
        ] {
            assert!(has(prefix), "{prefix} missing from {:#?}", f.problems);
        }
        assert_eq!(f.problems.len(), 14, "{:#?}", f.problems);
    }

    #[test]
    fn check_says_no_problems_while_smtpd_refuses_every_connection() {
        let d = instance(&[("timeoutsmtpd", "100000\n")]);
        assert_eq!(
            check(d.path()).problems,
            vec!["control/timeoutsmtpd: more than 86400 seconds \
                  (postern-smtpd would refuse every connection with 421)"
                .to_string()]
        );
        let d = instance(&[(
            "authsenders",
            "# who may send as whom\nalice@example.test\n",
        )]);
        assert_eq!(
            check(d.path()).problems,
            vec!["control/authsenders:2: expected LOGIN:SENDER \
                  (postern-smtpd would refuse every connection with 421)"
                .to_string()]
        );
        // A bad number is named once, not again by the loaders that read it too.
        let d = instance(&[("databytes", "ten\n")]);
        assert_eq!(check(d.path()).problems.len(), 1);
        // smtpd's pace: each file named once, over-long limits by smtpd's loader.
        let d = instance(&[("minrate", "fast\n"), ("minratewindow", "30 s\n")]);
        let problems = check(d.path()).problems;
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].starts_with("control/minrate:1: not a whole number"));
        assert!(problems[1].starts_with("control/minratewindow:1: not a whole number"));
        let d = instance(&[("timeoutsession", "100000\n")]);
        assert_eq!(
            check(d.path()).problems,
            vec!["control/timeoutsession: more than 86400 seconds \
                  (postern-smtpd would refuse every connection with 421)"
                .to_string()]
        );
    }

    #[test]
    fn line_numbers_are_read_from_messages() {
        assert_eq!(line_of("control/users:12: bad", "users"), Some(12));
        assert_eq!(line_of("control/users: bad", "users"), None);
        assert_eq!(line_of("control/aliases:3: x", "users"), None);
    }
}
