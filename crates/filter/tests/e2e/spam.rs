//! Score engines end to end: Debian's real rspamd and spamd, each started by the test on
//! a free loopback port with its own configuration and directories (never the system
//! service), and the real postern-scan between a reason pipe on fd 6 and the recording
//! postern-queue of [`Setup`]: the GTUBE message refused or tagged, a clean message
//! delivered with our `X-Spam-*` headers and without the sender's, authenticated mail
//! skipped or scored, and an engine that is gone a temporary failure.

use crate::scan::Setup;
use postern_testkit::{expect_within, require, Daemon};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// SpamAssassin's and rspamd's test string (Generic Test for Unsolicited Bulk Email).
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// What postern-smtpd puts on top, so the HELO reaches the engines.
const RECEIVED: &str = "Received: from mx.outside.test (unknown [192.0.2.7])\n\tby mx.example.test with ESMTP;\n\tMon, 07 Dec 2026 12:00:00 +0000\n";

fn gtube_message() -> String {
    format!("{RECEIVED}From: sender@outside.test\nTo: user@example.test\nSubject: Test spam mail (GTUBE)\nDate: Mon, 07 Dec 2026 12:00:00 +0000\nMessage-ID: <gtube@outside.test>\n\nThis is the GTUBE, the\n\tGeneric\nTest for\n\tUnsolicited\nBulk\n\tEmail\n\n{GTUBE}\n")
}

/// A plain message that claims, in headers of its own, to have been checked already.
fn clean_message() -> String {
    format!("{RECEIVED}X-Spam-Status: No, score=-100.0\nFrom: sender@outside.test\nTo: user@example.test\nSubject: lunch on Tuesday\nDate: Mon, 07 Dec 2026 12:00:00 +0000\nMessage-ID: <lunch.42@outside.test>\nX-Spam-Score: -100.0\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\nHello,\n\nshall we meet for lunch on Tuesday at noon, at the usual place?\n\nRegards,\nSam\n")
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait for a listener on `port` (engines compile their rules first).
fn wait_for_port(what: &str, port: u16, daemon: &mut Daemon, log: &Path) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = daemon.exited() {
            panic!(
                "{what} exited ({status}) before listening:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what} not listening on {port} after 120 s:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// rspamd's normal worker alone on `port`: Debian's configuration from /etc/rspamd with
/// our local.d/override.d (no controller, proxy or fuzzy worker; the modules that ask
/// the network — DNS lists, SPF, DKIM, DMARC, the hostname checks — off; a short public
/// suffix list, so startup does not compile Debian's 9 600 suffixes) and our own
/// database, run and log directories.
fn start_rspamd(dir: &Path) -> Option<(Daemon, u16)> {
    let rspamd = require("rspamd", "rspamd")?;
    let port = free_port();
    for d in ["local.d", "override.d", "db", "run", "log"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let write = |name: &str, text: String| fs::write(dir.join(name), text).unwrap();
    write(
        "local.d/worker-normal.inc",
        format!("bind_socket = \"127.0.0.1:{port}\";\ncount = 1;\n"),
    );
    for worker in ["controller", "proxy", "fuzzy"] {
        write(
            &format!("override.d/worker-{worker}.inc"),
            "enabled = false;\n".into(),
        );
    }
    write(
        "override.d/logging.inc",
        format!(
            "type = \"file\";\nfilename = \"{}\";\nlevel = \"info\";\n",
            dir.join("log/rspamd.log").display()
        ),
    );
    write("tld.dat", "test\ncom\norg\nnet\n".into());
    write(
        "local.d/options.inc",
        format!(
            "url_tld = \"{}\";\ndns {{ timeout = 1s; retransmits = 1; }}\n",
            dir.join("tld.dat").display()
        ),
    );
    for module in [
        "rbl",
        "hfilter",
        "spf",
        "dkim",
        "dmarc",
        "fuzzy_check",
        "asn",
        "neural",
        "reputation",
        "url_redirector",
        "dkim_signing",
        "arc",
    ] {
        write(
            &format!("local.d/{module}.conf"),
            "enabled = false;\n".into(),
        );
    }
    let mut cmd = Command::new(rspamd);
    cmd.args(["-c", "/etc/rspamd/rspamd.conf", "-f", "-i"]);
    if is_root() {
        cmd.args(["-u", "root", "-g", "root"]);
    }
    for (var, path) in [
        ("LOCAL_CONFDIR", dir.to_path_buf()),
        ("DBDIR", dir.join("db")),
        ("RUNDIR", dir.join("run")),
        ("LOGDIR", dir.join("log")),
    ] {
        cmd.arg("--var").arg(format!("{var}={}", path.display()));
    }
    cmd.arg("-p").arg(dir.join("run/rspamd.pid"));
    let out = fs::File::create(dir.join("log/stderr")).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut d = Daemon::spawn("rspamd", cmd);
    wait_for_port("rspamd", port, &mut d, &dir.join("log/rspamd.log"));
    Some((d, port))
}

/// spamd on `port`, local tests only (`-L`), no user configuration (`-x`), a site
/// configuration of its own (Debian's plugin loaders and a local.cf without Bayes or
/// DNS), two children.
fn start_spamd(dir: &Path) -> Option<(Daemon, u16)> {
    let spamd = require("spamd", "spamd")?;
    let port = free_port();
    let site = dir.join("site");
    fs::create_dir_all(&site).unwrap();
    fs::create_dir_all(dir.join("home")).unwrap();
    for entry in fs::read_dir("/etc/spamassassin").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pre") {
            fs::copy(&path, site.join(path.file_name().unwrap())).unwrap();
        }
    }
    fs::write(
        site.join("local.cf"),
        "required_score 5.0\nuse_bayes 0\nbayes_auto_learn 0\ndns_available no\nskip_rbl_checks 1\n",
    )
    .unwrap();
    // spamd's children run as nobody: let them into the directory.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(spamd);
    cmd.arg(format!("--listen=127.0.0.1:{port}"))
        .args(["--allowed-ips=127.0.0.1", "-x", "-L", "-m", "2"])
        .arg(format!("--siteconfigpath={}", site.display()))
        .args(["-s", "stderr"])
        .arg(format!("--helper-home-dir={}", dir.join("home").display()))
        .arg(format!("--pidfile={}", dir.join("spamd.pid").display()));
    if is_root() {
        cmd.args(["-u", "nobody"]);
    }
    let log = dir.join("spamd.log");
    let out = fs::File::create(&log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut d = Daemon::spawn("spamd", cmd);
    wait_for_port("spamd", port, &mut d, &log);
    Some((d, port))
}

/// One run of postern-scan as postern-smtpd runs it (fd 6 a pipe for the reason), with
/// `env` added: (exit code, what came on fd 6, stderr).
fn scan(s: &Setup, message: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let home = s.home();
    let msg = home.join("in.msg");
    let envelope = home.join("in.env");
    fs::write(&msg, message).unwrap();
    fs::write(&envelope, b"Fsender@outside.test\0Tuser@example.test\0\0").unwrap();
    let code = home.join("exit");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"( "$SCAN" <"$MSG" 6>&1 1<"$ENV"; echo $? >"$CODE" ) | cat"#)
        .env("SCAN", home.join("bin/postern-scan"))
        .env("MSG", &msg)
        .env("ENV", &envelope)
        .env("CODE", &code)
        .env("POSTERN_HOME", home)
        .env("TCPREMOTEIP", "192.0.2.7")
        .env_remove("AUTHUSER")
        .env_remove("RELAYCLIENT")
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "one scan took {:?}",
        started.elapsed()
    );
    (
        fs::read_to_string(&code).unwrap().trim().parse().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The messages the stand-in postern-queue was given, in order.
fn queued(s: &Setup) -> Vec<String> {
    (0..)
        .map(|n| s.home().join(format!("queued/{n}.msg")))
        .take_while(|p| p.exists())
        .map(|p| fs::read_to_string(p).unwrap())
        .collect()
}

fn control(s: &Setup, name: &str, text: &str) {
    fs::write(s.home().join("control").join(name), text).unwrap();
}

fn remove_control(s: &Setup, name: &str) {
    let _ = fs::remove_file(s.home().join("control").join(name));
}

/// The header section of a message.
fn header(message: &str) -> &str {
    message.split("\n\n").next().unwrap()
}

/// A refusal for spam: fd 6 says so, the copy is kept, the alert was queued.
fn assert_refused(s: &Setup, (code, reason, err): &(i32, String, String), rule_end: &str) {
    assert_eq!(*code, 82, "{err}");
    assert_eq!(
        reason, "D5.7.1 message refused: classified as spam",
        "{err}"
    );
    assert!(err.contains("event=quarantine"), "{err}");
    assert!(err.contains("reason=spam"), "{err}");
    assert!(err.contains(rule_end), "{err}");
    let copies = s.quarantined();
    let newest = copies
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .find(|c| c.contains(rule_end))
        .unwrap_or_else(|| panic!("no quarantine copy with {rule_end}: {copies:?}"));
    assert!(
        newest.starts_with("X-Postern-Quarantine: reason=spam rule="),
        "{newest}"
    );
    assert!(newest.contains(GTUBE), "the copy is the message");
    assert!(
        queued(s).last().unwrap().contains("classified")
            || queued(s).last().unwrap().contains("spam"),
        "an alert was queued"
    );
}

/// A message delivered with our headers first and none of the sender's.
fn assert_delivered_with(s: &Setup, status_start: &str) -> String {
    let delivered = queued(s).pop().unwrap();
    let head = header(&delivered);
    assert!(head.starts_with("X-Spam-Score: "), "{delivered}");
    assert!(
        head.contains(&format!("\nX-Spam-Status: {status_start}")),
        "{delivered}"
    );
    assert_eq!(head.matches("X-Spam-Score:").count(), 1, "{delivered}");
    assert_eq!(head.matches("X-Spam-Status:").count(), 1, "{delivered}");
    assert!(!head.contains("-100.0"), "the sender's own verdict is gone");
    assert!(delivered.contains("\nReceived: from mx.outside.test"));
    delivered
}

#[test]
fn rspamd_refuses_gtube_tags_by_score_and_delivers_clean_mail() {
    let s = Setup::new();
    let dir = s.home().join("rspamd");
    let Some((mut rspamd, port)) = start_rspamd(&dir) else {
        return;
    };
    let name = format!("rspamd:127.0.0.1:{port}");
    control(&s, "scanners", &format!("{name}\n"));

    // rspamd's own action: GTUBE is `reject`.
    control(&s, "spamactions", "rspamd\n");
    let r = scan(&s, &gtube_message(), &[]);
    assert_refused(&s, &r, &format!("rule={name}:reject"));
    assert!(
        r.2.contains(&format!(
            "event=spam ip=192.0.2.7 from=<sender@outside.test> rcpts=1 engine={name} origin=inbound score=15.0"
        )),
        "{}",
        r.2
    );
    assert!(r.2.contains("engine_action=reject"), "{}", r.2);
    assert!(r.2.contains("symbols=GTUBE"), "{}", r.2);

    // A clean message: delivered, `No`, the sender's X-Spam lines gone.
    let before = queued(&s).len();
    let (code, _, err) = scan(&s, &clean_message(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("action=none"), "{err}");
    assert_eq!(queued(&s).len(), before + 1);
    let delivered = assert_delivered_with(&s, "No, score=");
    assert!(delivered.contains("engine=rspamd"), "{delivered}");
    assert!(delivered.contains("shall we meet for lunch"));

    // Thresholds of our own: 15 is over `tag 1`, under `reject 1000`: delivered, tagged.
    control(&s, "spamactions", "tag 1\nreject 1000\n");
    let (code, _, err) = scan(&s, &gtube_message(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("action=tag"), "{err}");
    let delivered = assert_delivered_with(&s, "Yes, score=15.0 required=1.0 engine=rspamd");
    assert!(delivered.starts_with("X-Spam-Score: 15.0\n"), "{delivered}");
    assert!(delivered.contains("tests=GTUBE"), "{delivered}");

    // Authenticated mail is skipped by default, scored when spamoutbound says so.
    control(&s, "spamactions", "rspamd\n");
    let (code, _, err) = scan(&s, &gtube_message(), &[("AUTHUSER", "alice")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("event=spam ip=192.0.2.7 from=<sender@outside.test> rcpts=1 action=skipped origin=authenticated"),
        "{err}"
    );
    assert!(!header(&queued(&s).pop().unwrap()).contains("X-Spam-"));
    control(&s, "spamoutbound", "score\n");
    let r = scan(&s, &gtube_message(), &[("AUTHUSER", "alice")]);
    assert_refused(&s, &r, &format!("rule={name}:reject"));
    assert!(r.2.contains("origin=authenticated score=15.0"), "{}", r.2);
    let log = fs::read_to_string(dir.join("log/rspamd.log")).unwrap();
    assert!(
        log.contains("user: alice"),
        "rspamd was told the user: {log}"
    );
    assert!(
        log.contains("from: <sender@outside.test>"),
        "and the sender: {log}"
    );
    remove_control(&s, "spamoutbound");

    // rspamd gone: 451, unless scanfailopen; then the sender's headers still go.
    rspamd.stop();
    let (code, reason, err) = scan(&s, &clean_message(), &[]);
    assert_eq!(code, 71, "{err}");
    assert_eq!(reason, "");
    assert!(
        err.contains(&format!(
            "event=scanerror ip=192.0.2.7 from=<sender@outside.test> rcpts=1 engine={name}"
        )),
        "{err}"
    );
    control(&s, "scanfailopen", "1\n");
    let (code, _, err) = scan(&s, &clean_message(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!header(&queued(&s).pop().unwrap()).contains("X-Spam-"));
}

#[test]
fn spamd_rejects_or_quarantines_gtube_and_delivers_clean_mail() {
    let s = Setup::new();
    let dir = s.home().join("spamd");
    let Some((mut spamd, port)) = start_spamd(&dir) else {
        return;
    };
    let name = format!("spamd:127.0.0.1:{port}");
    control(&s, "scanners", &format!("{name}\n"));

    // The default actions: tag 5, reject 15; GTUBE scores 1000 and more.
    let r = scan(&s, &gtube_message(), &[]);
    assert_refused(&s, &r, &format!("rule={name}:reject"));
    let score: f64 =
        r.2.split(&format!("engine={name} origin=inbound score="))
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no score logged: {}", r.2));
    assert!(score >= 900.0, "GTUBE scores 1000, give or take: {}", r.2);
    assert!(
        r.2.contains("required=5.0 action=reject symbols="),
        "{}",
        r.2
    );
    assert!(r.2.contains("GTUBE"), "{}", r.2);

    let (code, _, err) = scan(&s, &clean_message(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("action=none"), "{err}");
    assert!(err.contains("event=scan ip=192.0.2.7"), "{err}");
    assert!(err.contains(&format!("engines={name}")), "{err}");
    assert_delivered_with(&s, "No, score=");

    control(&s, "spamactions", "tag 5\nquarantine 10\nreject 5000\n");
    let r = scan(&s, &gtube_message(), &[]);
    assert_refused(&s, &r, &format!("rule={name}:quarantine"));
    assert_eq!(s.quarantined().len(), 2);

    // A relay client's mail, scored with outbound settings (spamd's User).
    control(&s, "spamoutbound", "score outbound\n");
    let (code, _, err) = scan(&s, &clean_message(), &[("RELAYCLIENT", "")]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("origin=relayclient"), "{err}");
    assert_delivered_with(&s, "No, score=");

    spamd.stop();
    let (code, _, err) = scan(&s, &gtube_message(), &[]);
    assert_eq!(code, 71, "spamd down: 451, not 'clean': {err}");
    assert!(err.contains("event=scanerror"), "{err}");
    assert!(err.contains("failopen=false"), "{err}");
}

#[test]
fn an_engine_address_nobody_listens_on_is_a_scanner_error() {
    let s = Setup::new();
    let port = free_port();
    control(&s, "scanners", &format!("spamd:127.0.0.1:{port}\n"));
    let (code, _, err) = scan(&s, &clean_message(), &[]);
    assert_eq!(code, 71, "{err}");
    assert!(err.contains("spam scanner failed"), "{err}");
    assert!(queued(&s).is_empty());
    control(&s, "scanfailopen", "1\n");
    let (code, _, err) = scan(&s, &clean_message(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("failopen=true"), "{err}");
    let delivered = queued(&s).pop().unwrap();
    assert!(!header(&delivered).contains("X-Spam-"), "{delivered}");
    control(&s, "spamactions", "drop 5\n");
    let (code, _, err) = scan(&s, &clean_message(), &[]);
    assert_eq!(code, 55, "{err}");
    assert!(err.contains("control/spamactions:1:"), "{err}");
    expect_within(Duration::from_secs(1), "nothing more queued", || {
        queued(&s).len() == 1
    });
}
