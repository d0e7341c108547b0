//! An authenticated submission leaves DKIM-signed and the signature verifies where it
//! lands: an instance made by `posternctl init` for example.test, a key made by
//! `posternctl dkim new`, its TXT record served by dnsmasq (the instance's
//! `control/resolvers`), alice@example.test made by postern-user. Alice logs in on the
//! submission service with Python's smtplib and writes to bob@elsewhere.test; smtproutes
//! sends elsewhere.test to an SMTP sink on loopback (Python, standard library only) that
//! keeps the bytes as they came over the wire, and dkimpy (Debian's python3-dkim) checks
//! them, asking dnsmasq for the key as any receiver asks DNS. A second message — an
//! 8-bit UTF-8 body, long header lines, dot-leading and blank-ended lines — shows the
//! signature survives what postern does on the way (smtpd's Received line, the queue,
//! postern-remote's SMTP); a changed copy must fail.

use crate::support::{add_domain, free_port, mail_instance, run_with_input, ThrowawayUser};
use postern_testkit::{expect_within, run, tempdir, workspace_bin, Daemon};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const PASSWORD: &str = "Zq8#mW3!vTk5";
/// Debian's python, whose dist-packages hold python3-dkim and dnspython.
const PYTHON: &str = "/usr/bin/python3";
const SINK: &str = include_str!("smtp_sink.py");
const VERIFY: &str = include_str!("dkim_verify_dns.py");

/// The TXT text of `posternctl dkim new`'s zone line: the quoted strings, joined.
fn record_text(zone_line: &str) -> String {
    zone_line
        .split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat()
}

/// dnsmasq's option for a TXT record, the text cut in strings of 255 bytes.
fn txt_option(name: &str, text: &str) -> String {
    let strings: Vec<&str> = text
        .as_bytes()
        .chunks(255)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!("--txt-record={name},{}", strings.join(","))
}

/// dkimpy's verdict on `file`: (passed, its output).
fn dkimpy(dir: &Path, dns_port: u16, file: &Path) -> (bool, String) {
    let script = dir.join("dkim_verify_dns.py");
    fs::write(&script, VERIFY).unwrap();
    let (code, out, err) = run(
        Command::new(PYTHON)
            .arg(&script)
            .arg(dns_port.to_string())
            .arg(file),
        T,
    );
    (code == Some(0), format!("{out}{err}"))
}

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn a_submission_arrives_dkim_signed_and_dkimpy_verifies_it() {
    if !std::path::Path::new("/usr/lib/python3/dist-packages/dkim/__init__.py").exists() {
        assert!(
            !postern_testkit::interop_required(),
            "dkimpy (Debian package python3-dkim) is required; scripts/test installs it"
        );
        return;
    }
    let Some(user) = ThrowawayUser::create("postern-t-dkimsub") else {
        return;
    };
    let dir = tempdir();
    let (home, ports) = mail_instance(&user, dir.path());
    add_domain(&user, &home, "example.test", PASSWORD);
    let mut add = user.command(workspace_bin("postern-user"));
    add.env("POSTERN_HOME", &home)
        .args(["add", "alice@example.test"]);
    run_with_input(
        "postern-user add",
        &mut add,
        format!("{PASSWORD}\n").as_bytes(),
    );

    // The key, and its record as posternctl prints it.
    let ctl = |args: &[&str]| {
        let mut cmd = user.command(workspace_bin("posternctl"));
        cmd.arg("--home").arg(&home).args(args);
        run(&mut cmd, T)
    };
    let (code, zone_line, err) = ctl(&["dkim", "new", "example.test", "--selector", "s1"]);
    assert_eq!(code, Some(0), "dkim new: {err}");
    eprintln!("posternctl dkim new: {err}{zone_line}");
    assert!(
        zone_line.starts_with("s1._domainkey.example.test. IN TXT"),
        "{zone_line}"
    );
    let text = record_text(&zone_line);
    assert!(text.starts_with("v=DKIM1; k=rsa; p="), "{text}");

    // DNS: that record and nothing else, for the instance and for dkimpy.
    let Some((_dns, dns_port)) = postern_testkit::dnsmasq(&[
        "--local=/#/".to_string(),
        txt_option("s1._domainkey.example.test", &text),
    ]) else {
        return;
    };
    fs::write(
        home.join("control/resolvers"),
        format!("127.0.0.1:{dns_port}\n"),
    )
    .unwrap();
    let (code, list, err) = ctl(&["dkim", "list"]);
    assert_eq!(code, Some(0), "dkim list: {err}");
    assert_eq!(
        list.trim(),
        "example.test s1 rsa signing published",
        "{list}"
    );

    // The peer: an SMTP sink for elsewhere.test, which smtproutes sends there.
    let sink_port = free_port();
    let received = dir.path().join("received");
    fs::create_dir(&received).unwrap();
    let sink_script = dir.path().join("smtp_sink.py");
    fs::write(&sink_script, SINK).unwrap();
    let mut sink = Command::new(PYTHON);
    sink.arg(&sink_script)
        .arg(sink_port.to_string())
        .arg(&received);
    let _sink = Daemon::spawn_quiet("smtp sink", sink);
    expect_within(T, "the sink to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", sink_port)).is_ok()
    });
    fs::write(
        home.join("control/smtproutes"),
        format!("elsewhere.test:127.0.0.1:{sink_port}\n"),
    )
    .unwrap();

    let mut svscan = user.command(workspace_bin("postern-svscan"));
    svscan.arg(home.join("service"));
    let _svscan = Daemon::spawn_quiet("postern-svscan", svscan);
    expect_within(T, "the submission service to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", ports.submission)).is_ok()
    });

    // Alice, from an address that is not a relay client, logs in and sends two messages.
    let long_subject =
        "Quarterly figures: ".to_string() + &"revenue, costs and margins; ".repeat(12);
    // A header field of 1 100 bytes, folded (a line may not pass 998), as mail
    // clients write long References.
    let references = (1..=30)
        .map(|i| format!("<thread-{i}-a7f3c9e1@example.test>"))
        .collect::<Vec<_>>()
        .chunks(6)
        .map(|c| c.join(" "))
        .collect::<Vec<_>>()
        .join("\\r\\n\\t");
    let send = format!(
        r#"
import smtplib, ssl
s = smtplib.SMTP("127.0.0.1", {submission}, timeout=30, source_address=("127.0.0.200", 0))
s.ehlo("laptop.example.test")
if s.has_extn("starttls"):
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo("laptop.example.test")
    print("starttls")
s.login("alice@example.test", "{PASSWORD}")
first = (b"From: Alice <alice@example.test>\r\nTo: Bob <bob@elsewhere.test>\r\n"
         b"Subject: lunch\r\nDate: Mon, 7 Dec 2026 23:00:00 +0000\r\n"
         b"Message-ID: <dkim-1@example.test>\r\n\r\nBob,\r\nlunch on Friday?\r\nAlice\r\n")
s.sendmail("alice@example.test", ["bob@elsewhere.test"], first)
second = ("From: Alice =?utf-8?q?W=C3=BCrth?= <alice@example.test>\r\nTo: bob@elsewhere.test\r\n"
          "Subject: {long_subject}\r\n"
          "References: {references}\r\n"
          "Date: Mon, 7 Dec 2026 23:01:00 +0000\r\nMessage-ID: <dkim-2@example.test>\r\n"
          "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
          "Content-Transfer-Encoding: 8bit\r\n\r\n"
          "Grüße aus Zürich — 東京 → São Paulo, 5 €.\r\n"
          ".a line that starts with a dot\r\n"
          "trailing blanks   \r\n"
          "\r\n\r\n").encode("utf-8")
s.sendmail("alice@example.test", ["bob@elsewhere.test"], second, mail_options=["BODY=8BITMIME"])
s.quit()
print("sent")
"#,
        submission = ports.submission,
    );
    let (code, out, err) = run(Command::new("python3").args(["-c", &send]), T);
    assert_eq!(code, Some(0), "smtplib: {err}{out}");
    assert!(out.contains("sent"), "{out}");
    eprintln!("smtplib: {out}");

    // postern-send delivers the two in parallel: the sink numbers them as they arrive,
    // so each is found by its Message-ID.
    expect_within(T, "both messages at the sink", || {
        received.join("2.eml").is_file()
    });
    let by_id = |id: &str| {
        ["1.eml", "2.eml"]
            .iter()
            .map(|n| received.join(n))
            .find(|p| String::from_utf8_lossy(&fs::read(p).unwrap()).contains(id))
            .unwrap_or_else(|| panic!("no message {id} at the sink"))
    };
    let (first, second) = (
        by_id("<dkim-1@example.test>"),
        by_id("<dkim-2@example.test>"),
    );

    for (file, what) in [(&first, "plain"), (&second, "8-bit, long headers")] {
        let bytes = fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("DKIM-Signature: "), "{what}: {text}");
        assert_eq!(text.matches("DKIM-Signature:").count(), 1, "{what}: {text}");
        let (ok, out) = dkimpy(dir.path(), dns_port, file);
        println!("{what} message, as the sink received it:\n{text}\n{out}");
        assert!(ok, "{what}: dkimpy: {out}");
        assert!(out.contains("d=example.test s=s1 a=rsa-sha256"), "{out}");
        assert!(out.trim_end().ends_with("pass"), "{out}");
    }
    let second_bytes = fs::read(&second).unwrap();
    let second_text = String::from_utf8(second_bytes.clone()).expect("UTF-8 kept");
    assert!(
        second_text.contains("Grüße aus Zürich — 東京 → São Paulo, 5 €.\r\n"),
        "{second_text}"
    );
    assert!(
        second_text.contains("\r\n.a line that starts with a dot\r\n"),
        "{second_text}"
    );

    // The same bytes with one body character changed: dkimpy must refuse them.
    let changed = dir.path().join("changed.eml");
    fs::write(&changed, second_text.replace("5 €", "6 €")).unwrap();
    let (ok, out) = dkimpy(dir.path(), dns_port, &changed);
    assert!(!ok, "a changed body verified: {out}");
    assert!(out.contains(" fail (body hash mismatch"), "{out}");
    println!("the second message with 5 € made 6 €: {out}");
}
