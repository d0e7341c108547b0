//! `posternctl audit`: instances made by `posternctl init`, a real
//! postern-tcpserver → postern-smtpd chain on a kernel-chosen loopback port for the
//! live probes (pointed at with `--smtp`), and the failures the checklist must catch:
//! an open relay by the rules, a version in the banner, a changed control file after
//! `--record`, a world-writable control file, a world-readable key.

use postern_common::tai64n::Tai64n;
use postern_testkit::{run, workspace_bin, Daemon, TempDir};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const RUN: Duration = Duration::from_secs(120);

fn posternctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_posternctl"));
    cmd.env_remove("POSTERN_HOME");
    cmd
}

/// An instance made by `posternctl init --domain example.test`, with no programs linked
/// into bin/ (the chain is started from the build directory).
struct Instance {
    dir: TempDir,
    _nobin: TempDir,
}

impl Instance {
    fn new() -> Instance {
        let dir = postern_testkit::tempdir();
        let nobin = postern_testkit::tempdir();
        let home = dir.path().join("i");
        let (code, out, err) = run(
            posternctl()
                .arg("init")
                .arg("--home")
                .arg(&home)
                .args(["--domain", "example.test", "--bin"])
                .arg(nobin.path()),
            RUN,
        );
        assert_eq!(code, Some(0), "init: {out}{err}");
        let i = Instance { dir, _nobin: nobin };
        i.write("me", "mx.example.test\n");
        // Hosted (its recipients are checked): an rcpthosts domain that accepts every
        // recipient is a backscatter FAIL of its own (tested below).
        i.write("domains", "example.test\n");
        i.cdb();
        i
    }

    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("i")
    }

    fn control(&self, name: &str) -> std::path::PathBuf {
        self.home().join("control").join(name)
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(self.control(name), text).unwrap();
    }

    fn chmod(&self, name: &str, mode: u32) {
        fs::set_permissions(self.control(name), fs::Permissions::from_mode(mode)).unwrap();
    }

    fn cdb(&self) {
        let (code, out, err) = run(posternctl().arg("cdb").arg("--home").arg(self.home()), RUN);
        assert_eq!(code, Some(0), "cdb: {out}{err}");
    }

    fn audit(&self, extra: &[&str]) -> (Option<i32>, String, String) {
        run(
            posternctl()
                .arg("audit")
                .arg("--home")
                .arg(self.home())
                .args(extra),
            RUN,
        )
    }
}

/// postern-tcpserver -v with the instance's tcp.smtp.cdb in front of postern-smtpd, on
/// 127.0.0.1 and a port the kernel chose (`-1` prints it).
struct Smtpd {
    _daemon: Daemon,
    port: u16,
}

impl Smtpd {
    fn start(i: &Instance) -> Smtpd {
        let log = fs::File::create(i.dir.path().join("tcpserver.log")).unwrap();
        let mut cmd = Command::new(workspace_bin("postern-tcpserver"));
        cmd.args(["-1", "-v", "-H", "-R", "-l", "mx.example.test", "-x"])
            .arg(i.control("tcp.smtp.cdb"))
            .args(["127.0.0.1", "0"])
            .arg(workspace_bin("postern-smtpd"))
            .env("POSTERN_HOME", i.home())
            .env("QMAILQUEUE", "/bin/false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut daemon = Daemon::spawn("postern-tcpserver", cmd);
        let stdout = daemon.child_mut().stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line.trim().parse().expect("tcpserver -1 prints the port");
        Smtpd {
            _daemon: daemon,
            port,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn line_starting<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

#[test]
fn the_default_configuration_passes() {
    let i = Instance::new();
    let smtpd = Smtpd::start(&i);
    let (code, out, err) = i.audit(&["--smtp", &smtpd.addr()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("FAIL  "), "{out}");
    let relay = line_starting(&out, "PASS  open relay — ");
    assert!(relay.contains("all 7 relay tricks refused"), "{relay}");
    assert!(relay.contains("from 127.0.0.200 to 127.0.0.1:"), "{relay}");
    line_starting(&out, "PASS  relay rules — ");
    let banner = line_starting(&out, "PASS  banner — ");
    assert!(banner.contains("220 mx.example.test ESMTP"), "{banner}");
    line_starting(&out, "PASS  rcpthosts — ");
    line_starting(&out, "PASS  file modes — ");
    line_starting(&out, "PASS  secrets — ");
    // What a fresh instance lacks is a WARN with its fix on the next line.
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("WARN  integrity — no checksums recorded"))
        .expect(&out);
    assert!(lines[at + 1].starts_with("      fix: "), "{out}");
    line_starting(&out, "WARN  antivirus — ");
    line_starting(&out, "WARN  DNS blocklist — ");
    line_starting(&out, "WARN  TLS certificate — ");
    assert!(
        out.ends_with("FAIL\n") && out.contains("\naudit: "),
        "{out}"
    );
    assert!(line_starting(&out, "audit: ").ends_with(" 0 FAIL"), "{out}");
}

/// A domain in rcpthosts that is neither hosted nor covered by relayrecipients accepts
/// every recipient: a FAIL naming it. Listing its recipients (or `@domain`, knowingly)
/// passes.
#[test]
fn a_domain_that_accepts_every_recipient_fails_as_backscatter() {
    let i = Instance::new();
    i.write("rcpthosts", "example.test\ncorp.test\n");
    let (code, out, _) = i.audit(&[]);
    assert_ne!(code, Some(0), "{out}");
    let line = line_starting(&out, "FAIL  backscatter — ");
    assert!(
        line.contains("accepts every recipient of corp.test: backscatter"),
        "{line}"
    );
    assert!(!line.contains("example.test"), "{line}");
    i.write("relayrecipients", "alice@corp.test\nbob@corp.test\n");
    i.cdb();
    let (_, out, _) = i.audit(&[]);
    line_starting(&out, "PASS  backscatter — ");
}

/// A domain whose recipients are verified at the next hop (`verifyrecipients`) refuses
/// made-up names at RCPT: covered, as a relayrecipients domain is.
#[test]
fn a_domain_verified_by_callout_is_not_backscatter() {
    let i = Instance::new();
    i.write("rcpthosts", "example.test\ncorp.test\npartner.test\n");
    i.write("verifyrecipients", "corp.test\n");
    let (_, out, _) = i.audit(&[]);
    let line = line_starting(&out, "FAIL  backscatter — ");
    assert!(line.contains("of partner.test:"), "{line}");
    assert!(!line.contains("corp.test"), "{line}");
    i.write("verifyrecipients", "corp.test\n@partner.test\n");
    let (_, out, _) = i.audit(&[]);
    line_starting(&out, "PASS  backscatter — ");
}

#[test]
fn an_open_relay_by_the_rules_fails() {
    let i = Instance::new();
    i.write("tcp.smtp", ":allow,RELAYCLIENT=\"\"\n");
    i.cdb();
    let smtpd = Smtpd::start(&i);
    let (code, out, err) = i.audit(&["--smtp", &smtpd.addr()]);
    assert_eq!(code, Some(100), "{out}{err}");
    let relay = line_starting(&out, "FAIL  open relay — ");
    assert!(relay.contains("OPEN RELAY"), "{relay}");
    assert!(
        relay.contains("foreign domain RCPT TO:<postern-audit@relaytest.example.net>"),
        "{relay}"
    );
    assert!(relay.contains("from 127.0.0.200"), "{relay}");
    let rules = line_starting(&out, "FAIL  relay rules — ");
    assert!(rules.contains("the default rule (line 1)"), "{rules}");
    assert_eq!(
        err.trim(),
        "posternctl: fatal: audit: 2 item(s) FAILed",
        "{out}"
    );
}

#[test]
fn a_version_in_the_banner_fails() {
    let i = Instance::new();
    i.write("smtpgreeting", "mail.example.test ESMTP Postfix 3.7.11\n");
    let smtpd = Smtpd::start(&i);
    // Without --smtp the address comes from the service's run script.
    let service = i.home().join("service/smtpd");
    fs::create_dir_all(&service).unwrap();
    postern_testkit::write_script(
        &service.join("run"),
        &format!(
            "#!/bin/sh\nexec 2>&1\nexec \"$bin/postern-tcpserver\" -v -R -H -l \"$me\" -c 40 \\\n  \
             -x \"$POSTERN_HOME/control/tcp.smtp.cdb\" 127.0.0.1 {} \\\n  \
             \"$bin/postern-smtpd\" \"$bin/postern-checkpassword\" true\n",
            smtpd.port
        ),
    );
    let (code, out, err) = i.audit(&[]);
    assert_eq!(code, Some(100), "{out}{err}");
    let banner = line_starting(&out, "FAIL  banner — ");
    assert!(
        banner.contains("\"mail.example.test ESMTP Postfix 3.7.11 ESMTP\""),
        "{banner}"
    );
    assert!(banner.contains("names the software (Postfix"), "{banner}");
    let relay = line_starting(&out, "PASS  open relay — ");
    assert!(
        relay.contains(&format!("to 127.0.0.1:{})", smtpd.port)),
        "{relay}"
    );
}

#[test]
fn unknown_recipients_of_a_hosted_domain_are_refused() {
    let i = Instance::new();
    i.write("domains", "example.test\n");
    i.write("aliases", "postmaster@example.test: root@elsewhere.test\n");
    i.cdb();
    let smtpd = Smtpd::start(&i);
    let (code, out, err) = i.audit(&["--smtp", &smtpd.addr()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v = line_starting(&out, "PASS  recipient validation — ");
    assert!(v.contains("@example.test> answered 550"), "{v}");
}

#[test]
fn record_then_a_changed_control_file_fails_naming_it() {
    let i = Instance::new();
    let (code, out, err) = i.audit(&["--record"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with("posternctl: audit: recorded the checksums of "),
        "{out}"
    );
    let sums = i.control(".audit-checksums");
    assert_eq!(
        fs::metadata(&sums).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(0), "{out}");
    line_starting(&out, "PASS  integrity — ");
    // Nothing to probe: a WARN, not a FAIL.
    line_starting(&out, "WARN  open relay — not probed");

    i.write("databytes", "99999999\n");
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(100), "{out}");
    let line = line_starting(&out, "FAIL  integrity — ");
    assert!(line.contains("changed: control/databytes"), "{line}");
    i.write("newfile", "x\n");
    let (_, out, _) = i.audit(&["--record"]);
    assert!(out.contains("recorded"), "{out}");
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn a_world_writable_control_file_fails() {
    let i = Instance::new();
    i.chmod("rcpthosts", 0o666);
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(100), "{out}");
    let line = line_starting(&out, "FAIL  file modes — ");
    assert!(
        line.contains("control/rcpthosts (mode 0666: writable by everyone)"),
        "{line}"
    );
}

#[test]
fn a_world_readable_key_fails() {
    let i = Instance::new();
    i.write("tls/key.pem", "-----BEGIN PRIVATE KEY-----\n");
    i.chmod("tls/key.pem", 0o644);
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(100), "{out}");
    let line = line_starting(&out, "FAIL  secrets — ");
    assert!(line.contains("control/tls/key.pem (mode 0644)"), "{line}");
    i.chmod("tls/key.pem", 0o600);
    let (_, out, _) = i.audit(&[]);
    line_starting(&out, "PASS  secrets — ");
}

#[test]
fn rules_unused_for_the_stale_days_are_listed() {
    let i = Instance::new();
    i.write(
        "tcp.smtp",
        "127.0.0.1:allow,RELAYCLIENT=\"\"\n203.0.113.66:deny\n:allow\n",
    );
    let log = i.home().join("log/smtpd");
    fs::create_dir_all(&log).unwrap();
    let now = Tai64n::now().unix_secs();
    let stamp = |t: i64| Tai64n::from_unix(t, 0).label();
    let lines = [
        format!(
            "{} event=start ip=192.0.2.9 port=1 rule=\"\" status=1/40\n",
            stamp(now - 40 * 86_400)
        ),
        format!(
            "{} event=start ip=127.0.0.1 port=2 rule=127.0.0.1 status=1/40\n",
            stamp(now - 3 * 86_400)
        ),
        format!(
            "{} event=start ip=192.0.2.7 port=3 rule=\"\" status=1/40\n",
            stamp(now - 60)
        ),
    ];
    fs::write(log.join("current"), lines.concat()).unwrap();
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(0), "{out}");
    let line = line_starting(&out, "WARN  stale access rules — ");
    assert!(
        line.contains("matched no connection in 30 days: tcp.smtp: 203.0.113.66 (line 2)"),
        "{line}"
    );
    // A log shorter than --stale-days cannot tell.
    let (_, out, _) = i.audit(&["--stale-days", "50"]);
    let line = line_starting(&out, "PASS  stale access rules — ");
    assert!(
        line.contains("logs too short to judge (need 50 days): tcp.smtp"),
        "{line}"
    );
}

#[test]
fn bad_usage_exits_100_with_one_line() {
    let i = Instance::new();
    for args in [
        &["--stale-days", "0"][..],
        &["--smtp", "nonsense"][..],
        &["--bogus"][..],
    ] {
        let (code, out, err) = i.audit(args);
        assert_eq!(code, Some(100), "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("posternctl: usage: "), "{err}");
    }
    let missing = i.dir.path().join("nothing");
    let (code, _, err) = run(
        posternctl()
            .arg("audit")
            .arg("--home")
            .arg(Path::new(&missing)),
        RUN,
    );
    assert_eq!(code, Some(100), "{err}");
    assert!(
        err.starts_with("posternctl: fatal: no instance at "),
        "{err}"
    );
}

/// dnsmasq on a loopback port, answering for `.test` only: `bl.test` lists its test entry
/// 127.0.0.2 (TXT and A) and nothing else, `all.test` lists every address (a retired
/// zone's wildcard), `dead.test` lists nothing.
fn dnsmasq() -> Option<(Daemon, u16)> {
    let records = [
        "--local=/test/",
        "--txt-record=2.0.0.127.bl.test,listed for testing",
        "--host-record=2.0.0.127.bl.test,127.0.0.2",
        "--address=/all.test/127.0.0.2",
    ];
    postern_testkit::dnsmasq(&records.map(String::from))
}

#[test]
fn blocklist_zones_are_asked_for_their_test_entries() {
    let i = Instance::new();
    let Some((_dns, port)) = dnsmasq() else {
        return;
    };
    i.write("resolvers", &format!("127.0.0.1:{port}\n"));
    i.write("rblzones", "bl.test\n");
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(0), "{out}");
    let line = line_starting(&out, "PASS  DNS blocklist — ");
    assert!(
        line.contains("bl.test: answers, lists its test entry 127.0.0.2"),
        "{line}"
    );

    i.write("rblzones", "bl.test\ndead.test\n");
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(0), "{out}");
    let line = line_starting(&out, "WARN  DNS blocklist — ");
    assert!(
        line.contains("dead.test: does not list its test entry"),
        "{line}"
    );

    i.write("rblzones", "all.test\n");
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(100), "{out}");
    let line = line_starting(&out, "FAIL  DNS blocklist — ");
    assert!(
        line.contains("all.test: lists 127.0.0.1, so it lists everybody"),
        "{line}"
    );
}

/// A clamd stand-in on a unix socket: answers `zVERSION\0` with `answer` and a NUL.
fn fake_clamd(path: &Path, answer: String) {
    use std::io::{Read, Write};
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut cmd = Vec::new();
            let mut byte = [0u8; 1];
            while s.read(&mut byte).unwrap_or(0) == 1 && byte[0] != 0 && cmd.len() < 64 {
                cmd.push(byte[0]);
            }
            if cmd == b"zVERSION" {
                let _ = s.write_all(format!("{answer}\0").as_bytes());
            }
        }
    });
}

#[test]
fn antivirus_engines_must_answer_with_recent_signatures() {
    let i = Instance::new();
    let clamd_date = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days))
            .format("%a %b %e %H:%M:%S %Y")
            .to_string()
    };
    let fresh = i.dir.path().join("fresh.sock");
    let old = i.dir.path().join("old.sock");
    fake_clamd(&fresh, format!("ClamAV 1.4.3/27000/{}", clamd_date(1)));
    fake_clamd(&old, format!("ClamAV 1.4.3/26000/{}", clamd_date(10)));

    i.write("scanners", &format!("clamd:{}\n", fresh.display()));
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(0), "{out}");
    let line = line_starting(&out, "PASS  antivirus — ");
    assert!(line.contains("answers, signatures 27000 of "), "{line}");

    i.write("scanners", &format!("clamd:{}\n", old.display()));
    let (_, out, _) = i.audit(&[]);
    let line = line_starting(&out, "WARN  antivirus — ");
    assert!(line.contains("signatures 26000 are 10 days old"), "{line}");

    let gone = i.dir.path().join("gone.sock");
    i.write("scanners", &format!("clamd:{}\n", gone.display()));
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(100), "{out}");
    let line = line_starting(&out, "FAIL  antivirus — ");
    assert!(
        line.contains("unreachable: no such file or directory"),
        "{line}"
    );
}

#[test]
fn the_certificate_must_not_expire_soon() {
    let i = Instance::new();
    let Some(openssl) = postern_testkit::require("openssl", "openssl") else {
        return;
    };
    let make = |days: &str| {
        let tls = i.home().join("control/tls");
        let status = Command::new(&openssl)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=mx.example.test",
            ])
            .arg("-keyout")
            .arg(tls.join("key.pem"))
            .arg("-out")
            .arg(tls.join("cert.pem"))
            .args(["-days", days])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        i.chmod("tls/key.pem", 0o600);
    };
    make("365");
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(0), "{out}");
    let line = line_starting(&out, "PASS  TLS certificate — valid until ");
    assert!(
        line.contains("(364 days)") || line.contains("(365 days)"),
        "{line}"
    );
    // 21 days ahead is when renewals are due (certbot renews at 30 days left).
    make("22");
    let (_, out, _) = i.audit(&[]);
    line_starting(&out, "PASS  TLS certificate — valid until ");
    make("10");
    let (_, out, _) = i.audit(&[]);
    let line = line_starting(&out, "WARN  TLS certificate — expires in ");
    assert!(
        line.contains("expires in 9 days (") || line.contains("expires in 10 days ("),
        "{line}"
    );
    let fix = out
        .lines()
        .skip_while(|l| !l.starts_with("WARN  TLS certificate"))
        .nth(1)
        .unwrap_or("");
    assert!(fix.contains("posternctl cert install"), "{fix}");
    fs::remove_file(i.control("tls/key.pem")).unwrap();
    let (code, out, _) = i.audit(&[]);
    assert_eq!(code, Some(100), "{out}");
    line_starting(
        &out,
        "FAIL  TLS certificate — control/tls/cert.pem without control/tls/key.pem",
    );
}
