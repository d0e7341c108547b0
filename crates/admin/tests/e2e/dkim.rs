//! `posternctl dkim`: keys made, their TXT records printed, served by a real DNS server
//! (dnsmasq) and recognised by `dkim list`; rotation with `use` and `remove`.

use postern_testkit::run;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RUN: Duration = Duration::from_secs(120);

fn dkim(home: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_posternctl"));
    cmd.env_remove("POSTERN_HOME")
        .arg("--home")
        .arg(home)
        .arg("dkim")
        .args(args);
    run(&mut cmd, RUN)
}

/// The strings of a zone line's TXT record, as dnsmasq's `--txt-record` takes them on
/// its command line (unquoted: quotes there would be part of the text).
fn txt_option(zone_line: &str) -> String {
    let name = zone_line.split(". IN TXT").next().unwrap();
    let strings: Vec<String> = zone_line
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    format!("--txt-record={name},{}", strings.join(","))
}

#[test]
fn keys_are_made_published_listed_and_rotated() {
    let dir = postern_testkit::tempdir();
    let home = dir.path();
    fs::create_dir(home.join("control")).unwrap();

    let (code, rsa_line, err) = dkim(home, &["new", "Example.TEST", "--selector", "s1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        rsa_line.starts_with("s1._domainkey.example.test. IN TXT ( \"v=DKIM1; k=rsa; p=MIIB"),
        "{rsa_line}"
    );
    assert!(
        err.contains("it signs example.test's mail from now on"),
        "{err}"
    );
    let key = home.join("control/dkim/example.test/s1.key");
    let meta = fs::metadata(&key).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o400, "the signing account's alone");
    assert!(fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));

    let (code, ed_line, err) = dkim(
        home,
        &[
            "new",
            "example.test",
            "--type",
            "ed25519",
            "--selector",
            "e1",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(ed_line.contains("\"v=DKIM1; k=ed25519; p="), "{ed_line}");
    assert!(err.contains("s1 still signs"), "{err}");
    let (code, _, err) = dkim(home, &["new", "example.test", "--selector", "s1"]);
    assert_eq!(code, Some(100), "a selector is never made twice: {err}");
    let (code, _, err) = dkim(home, &["new", "example.test", "--type", "dsa"]);
    assert_eq!(code, Some(100), "{err}");

    // DNS: s1's record as printed, e1's with some other key, nothing for other.test.
    let (code, other_line, _) = dkim(
        home,
        &["new", "other.test", "--type", "ed25519", "--selector", "e1"],
    );
    assert_eq!(code, Some(0));
    let wrong = other_line.replace("other.test", "example.test");
    let Some((_dns, port)) = postern_testkit::dnsmasq(&[
        "--local=/test/".to_string(),
        txt_option(rsa_line.trim()),
        txt_option(wrong.trim()),
    ]) else {
        return;
    };
    fs::write(
        home.join("control/resolvers"),
        format!("127.0.0.1:{port}\n"),
    )
    .unwrap();
    let (code, list, err) = dkim(home, &["list"]);
    assert_eq!(code, Some(0), "{err}");
    eprintln!("{list}");
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "example.test e1 ed25519 - DNS has another key",
            "example.test s1 rsa signing published",
            "other.test e1 ed25519 signing not published",
        ]
    );

    let (code, again, _) = dkim(home, &["record", "example.test", "s1"]);
    assert_eq!((code, again.as_str()), (Some(0), rsa_line.as_str()));

    // Rotation: e1 signs, s1 stays until removed; the signing key cannot be removed.
    let (code, _, err) = dkim(home, &["use", "example.test", "e1"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = dkim(home, &["remove", "example.test", "e1"]);
    assert_eq!(code, Some(100), "{err}");
    assert!(err.contains("e1 signs example.test's mail"), "{err}");
    let (_, list, _) = dkim(home, &["list"]);
    assert!(list.contains("example.test e1 ed25519 signing"), "{list}");
    assert!(list.contains("example.test s1 rsa - published"), "{list}");
    let (code, _, err) = dkim(home, &["remove", "example.test", "s1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!key.exists());
    let (code, _, _) = dkim(home, &["use", "example.test", "s1"]);
    assert_eq!(code, Some(100), "a removed key cannot sign");
}

/// `posternctl audit`'s SPF, DKIM and DMARC lines for an instance made by `init`.
fn audit_lines(home: &Path) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_posternctl"));
    cmd.env_remove("POSTERN_HOME")
        .arg("audit")
        .arg("--home")
        .arg(home);
    let (_, out, err) = run(&mut cmd, RUN);
    let mut lines = Vec::new();
    let mut keep = false;
    for l in out.lines() {
        if !l.starts_with(' ') {
            keep = ["SPF ", "DKIM ", "DMARC "]
                .iter()
                .any(|p| l.get(6..).is_some_and(|rest| rest.starts_with(p)));
        }
        if keep {
            lines.push(l.to_string());
        }
    }
    assert!(!lines.is_empty(), "{out}{err}");
    lines
}

#[test]
fn audit_checks_each_hosted_domains_spf_dkim_and_dmarc() {
    let dir = postern_testkit::tempdir();
    let home = dir.path().join("i");
    let mut init = Command::new(env!("CARGO_BIN_EXE_posternctl"));
    init.env_remove("POSTERN_HOME")
        .arg("init")
        .arg("--home")
        .arg(&home)
        .args(["--domain", "example.test"]);
    let (code, out, err) = run(&mut init, RUN);
    assert_eq!(code, Some(0), "{out}{err}");
    let control = home.join("control");
    fs::write(control.join("me"), "mx.example.test\n").unwrap();
    fs::write(
        control.join("rcpthosts"),
        "example.test\nbare.test\nwrong.test\n",
    )
    .unwrap();
    let (code, line, err) = dkim(&home, &["new", "example.test", "--selector", "s1"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = dkim(&home, &["new", "wrong.test", "--selector", "s1"]);
    assert_eq!(code, Some(0), "{err}");
    let Some((_dns, port)) = postern_testkit::dnsmasq(&[
        "--local=/test/".to_string(),
        "--host-record=mx.example.test,192.0.2.25".to_string(),
        "--txt-record=example.test,v=spf1 ip4:192.0.2.25 -all".to_string(),
        "--txt-record=_dmarc.example.test,v=DMARC1; p=reject".to_string(),
        txt_option(line.trim()),
        "--txt-record=wrong.test,v=spf1 ip4:192.0.2.99 -all".to_string(),
        "--txt-record=_dmarc.wrong.test,v=DMARC1; p=none".to_string(),
    ]) else {
        return;
    };
    fs::write(control.join("resolvers"), format!("127.0.0.1:{port}\n")).unwrap();
    let lines = audit_lines(&home);
    let text = lines.join("\n");
    eprintln!("{text}");
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(
        has("PASS  SPF example.test — lets mx.example.test (192.0.2.25) send"),
        "{text}"
    );
    assert!(
        has(
            "PASS  DKIM example.test — s1._domainkey.example.test publishes the rsa key that signs"
        ),
        "{text}"
    );
    assert!(has("PASS  DMARC example.test — p=reject"), "{text}");
    assert!(has("WARN  SPF bare.test — no SPF record"), "{text}");
    assert!(has("WARN  DKIM bare.test — no signing key"), "{text}");
    assert!(has("WARN  DMARC bare.test — no DMARC record"), "{text}");
    assert!(
        has("FAIL  SPF wrong.test — does not let mx.example.test (192.0.2.25) send: SPF says fail"),
        "{text}"
    );
    assert!(
        has("FAIL  DKIM wrong.test — s1._domainkey.wrong.test is not in DNS"),
        "{text}"
    );
    assert!(has("WARN  DMARC wrong.test — p=none"), "{text}");
    assert!(
        text.contains("fix: publish s1._domainkey.wrong.test. IN TXT ( \"v=DKIM1; k=rsa; p="),
        "{text}"
    );
}
