//! `posternctl check`: a clean instance made by `posternctl init` passes; broken lines in
//! the rules, a number and the content rules are each named with their line, and the
//! command exits 100 without touching the compiled files.

use postern_testkit::{run, TempDir};
use std::fs;
use std::process::Command;
use std::time::Duration;

const RUN: Duration = Duration::from_secs(60);

fn posternctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_posternctl"));
    cmd.env_remove("POSTERN_HOME");
    cmd
}

fn instance() -> TempDir {
    let dir = postern_testkit::tempdir();
    let nobin = postern_testkit::tempdir();
    let (code, out, err) = run(
        posternctl()
            .arg("init")
            .arg("--home")
            .arg(dir.path())
            .args(["--domain", "example.test", "--bin"])
            .arg(nobin.path()),
        RUN,
    );
    assert_eq!(code, Some(0), "init: {out}{err}");
    // Hosted, so its recipients are checked (an open rcpthosts domain is a warning).
    fs::write(dir.path().join("control/domains"), "example.test\n").unwrap();
    let (code, out, err) = run(posternctl().arg("cdb").arg("--home").arg(dir.path()), RUN);
    assert_eq!(code, Some(0), "cdb: {out}{err}");
    dir
}

fn check(dir: &TempDir) -> (Option<i32>, String, String) {
    run(posternctl().arg("check").arg("--home").arg(dir.path()), RUN)
}

#[test]
fn a_fresh_instance_is_clean() {
    let dir = instance();
    let (code, out, err) = check(&dir);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("posternctl: check: "), "{out}");
    assert!(
        out.trim_end().ends_with("control files, no problems"),
        "{out}"
    );
    assert_eq!(err, "");
}

/// A gateway domain that accepts every recipient is a warning (mail flows, but made-up
/// addresses become bounces to forged senders); relayrecipients lifts it, and a source
/// newer than its cdb is one too. A bad relayrecipients line is a problem like any.
#[test]
fn open_gateway_domains_are_warned_about() {
    let dir = instance();
    let control = dir.path().join("control");
    fs::write(control.join("rcpthosts"), "example.test\ncorp.test\n").unwrap();
    let (code, out, err) = check(&dir);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with(
            "warning: control/rcpthosts: accepts every recipient of corp.test: backscatter"
        ),
        "{out}"
    );
    fs::write(control.join("relayrecipients"), "alice@corp.test\n").unwrap();
    let (_, out, _) = check(&dir);
    assert!(
        out.contains("warning: control/relayrecipients: newer than relayrecipients.cdb"),
        "{out}"
    );
    let (code, _, _) = run(posternctl().arg("cdb").arg("--home").arg(dir.path()), RUN);
    assert_eq!(code, Some(0));
    let (code, out, _) = check(&dir);
    assert_eq!(code, Some(0));
    assert!(!out.contains("warning:"), "{out}");
    fs::write(
        control.join("relayrecipients"),
        "alice@corp.test\nno at sign\n",
    )
    .unwrap();
    let (code, out, _) = check(&dir);
    assert_eq!(code, Some(100), "{out}");
    assert!(
        out.contains("control/relayrecipients:2: expected local@domain or @domain: no at sign"),
        "{out}"
    );
}

/// Recipient verification (`verifyrecipients`) covers a gateway domain as
/// relayrecipients does. Its bad lines and settings are problems, and so is a verified
/// domain whose route authenticates (postern-verify has no credentials); a listed domain
/// that is never verified is a warning.
#[test]
fn verified_domains_are_covered_and_their_files_checked() {
    let dir = instance();
    let control = dir.path().join("control");
    fs::write(control.join("rcpthosts"), "example.test\ncorp.test\n").unwrap();
    let (_, out, _) = check(&dir);
    assert!(
        out.contains("accepts every recipient of corp.test"),
        "{out}"
    );
    fs::write(
        control.join("verifyrecipients"),
        "# by callout\n@corp.test\n",
    )
    .unwrap();
    let (code, out, err) = check(&dir);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("warning:"), "{out}");
    // posternctl init made the answers' directory, 0700.
    use std::os::unix::fs::PermissionsExt;
    let cache = fs::metadata(dir.path().join("run/verify")).unwrap();
    assert_eq!(cache.permissions().mode() & 0o7777, 0o700);
    for made in ["run/pregreet", "run/greylist"] {
        let meta = fs::metadata(dir.path().join(made)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700, "{made}");
    }

    fs::write(
        control.join("verifyrecipients"),
        "corp.test\nexample.test\nelsewhere.test\n",
    )
    .unwrap();
    let (code, out, _) = check(&dir);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "warning: control/verifyrecipients: example.test is never verified: it is hosted here"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "warning: control/verifyrecipients: elsewhere.test is never verified: it is not in \
             control/rcpthosts"
        ),
        "{out}"
    );

    fs::write(control.join("verifyrecipients"), "corp.test\nbad_domain\n").unwrap();
    fs::write(control.join("verifypositive"), "a week\n").unwrap();
    let (code, out, _) = check(&dir);
    assert_eq!(code, Some(100), "{out}");
    assert!(
        out.contains("control/verifyrecipients:2: bad domain"),
        "{out}"
    );
    assert!(
        out.contains("control/verifypositive:1: not a whole number: a week"),
        "{out}"
    );
    fs::write(control.join("verifyrecipients"), "corp.test\n").unwrap();
    fs::remove_file(control.join("verifypositive")).unwrap();
    fs::write(control.join("verifytimeout"), "0\n").unwrap();
    let (code, out, _) = check(&dir);
    assert_eq!(code, Some(100), "{out}");
    assert!(
        out.contains(
            "control/verifytimeout: 0 is not between 1 and 300 (postern-verify would not run"
        ),
        "{out}"
    );
    fs::remove_file(control.join("verifytimeout")).unwrap();
    fs::write(
        control.join("smtproutes"),
        "corp.test:mail.corp.test tls=verify auth=corp\n",
    )
    .unwrap();
    let (code, out, _) = check(&dir);
    assert_eq!(code, Some(100), "{out}");
    assert!(
        out.contains(
            "control/verifyrecipients: corp.test is routed with auth=corp: postern-verify has \
             no credentials"
        ),
        "{out}"
    );
}

#[test]
fn bad_lines_are_named_and_exit_100() {
    let dir = instance();
    let control = dir.path().join("control");
    let cdb_before = fs::read(control.join("tcp.smtp.cdb")).unwrap();
    fs::write(
        control.join("tcp.smtp"),
        "# rules\n127.0.0.1:allow,RELAYCLIENT=\"\"\n10.0.0.1 allow\n:allow\n",
    )
    .unwrap();
    fs::write(control.join("databytes"), "# size\n10MB\n").unwrap();
    let mut rules = fs::read_to_string(control.join("filter.rules")).unwrap();
    rules.push_str(".exe 0 no tabs here\n");
    let filter_line = rules.lines().count();
    fs::write(control.join("filter.rules"), &rules).unwrap();

    let (code, out, err) = check(&dir);
    assert_eq!(code, Some(100), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines.contains(&"control/tcp.smtp:3: no colon: 10.0.0.1 allow"),
        "{out}"
    );
    assert!(
        lines.contains(&"control/databytes:2: not a whole number: 10MB"),
        "{out}"
    );
    let filter = format!("control/filter.rules:{filter_line}: ");
    assert!(
        lines.iter().any(|l| l.starts_with(&filter)),
        "{filter}: {out}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("posternctl: fatal: check: 3 problem(s) in "),
        "{err}"
    );
    // check writes nothing: the compiled rules are as they were.
    assert_eq!(fs::read(control.join("tcp.smtp.cdb")).unwrap(), cdb_before);
}

#[test]
fn check_says_no_problems_while_smtpd_refuses_every_connection() {
    // Each file parses as what it is (a number; lines), but breaks postern-smtpd's own
    // rules: it would answer 421 to every client and exit 111.
    let cases = [
        (
            "timeoutsmtpd",
            "100000\n",
            "control/timeoutsmtpd: more than 86400 seconds \
             (postern-smtpd would refuse every connection with 421)",
        ),
        (
            "authsenders",
            "# robots\nrobot@example.test\n",
            "control/authsenders:2: expected LOGIN:SENDER \
             (postern-smtpd would refuse every connection with 421)",
        ),
    ];
    for (file, text, problem) in cases {
        let dir = instance();
        fs::write(dir.path().join("control").join(file), text).unwrap();
        let (code, out, err) = check(&dir);
        assert_eq!(code, Some(100), "{file}: {out}{err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec![problem],
            "{file}: {out}"
        );
        assert!(
            err.starts_with("posternctl: fatal: check: 1 problem(s) in "),
            "{err}"
        );
    }
}

#[test]
fn bad_usage_exits_100_with_one_line() {
    let dir = instance();
    let (code, _, err) = run(
        posternctl()
            .arg("check")
            .arg("extra")
            .arg("--home")
            .arg(dir.path()),
        RUN,
    );
    assert_eq!(code, Some(100), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("posternctl: usage: "), "{err}");
}
