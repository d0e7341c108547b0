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
