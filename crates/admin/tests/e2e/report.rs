//! `posternctl report`: counts from generated multilog directories (real TAI64N stamps,
//! rotated `@….s`/`@….u` archives and `current`), `--since`, the HTML page rendered by
//! headless Chromium, and `--follow` on lines appended while it runs.

use nix::sys::signal::Signal;
use postern_common::tai64n::Tai64n;
use postern_testkit::{expect_within, require, run, Daemon, TempDir};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// 2023-11-14 22:00:00 UTC: the first hour of the generated logs.
const T0: i64 = 1_699_999_200;
const HOUR: i64 = 3600;
const RUN: Duration = Duration::from_secs(60);

fn posternctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_posternctl"));
    cmd.env("TZ", "UTC").env_remove("POSTERN_HOME");
    cmd
}

/// An instance directory with log directories under `log/`.
struct Instance {
    dir: TempDir,
}

impl Instance {
    fn new() -> Instance {
        Instance {
            dir: postern_testkit::tempdir(),
        }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self, service: &str) -> PathBuf {
        let dir = self.home().join("log").join(service);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Append `(time, line)`s to `log/SERVICE/FILE` with multilog's stamps.
    fn write(&self, service: &str, file: &str, lines: &[(i64, &str)]) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(service).join(file))
            .unwrap();
        for (i, (t, line)) in lines.iter().enumerate() {
            let stamp = Tai64n::from_unix(*t, i as u32 * 1000).label();
            writeln!(f, "{stamp} {line}").unwrap();
        }
    }

    fn report(&self, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut cmd = posternctl();
        cmd.arg("report").arg("--home").arg(self.home()).args(extra);
        run(&mut cmd, RUN)
    }
}

fn archive(t: i64, suffix: &str) -> String {
    format!("{}.{suffix}", Tai64n::from_unix(t, 0).label())
}

/// The known mix: four hours, five services, every category but "access rule".
fn generated() -> Instance {
    let i = Instance::new();
    // smtpd: hours 0 and 1 in a rotated archive, hour 2 in current.
    i.write(
        "smtpd",
        &archive(T0 + 2 * HOUR - 10, "s"),
        &[
            (T0 + 60, "event=connect ip=192.0.2.1"),
            (T0 + 61, "event=accept ip=192.0.2.1 helo=a.test from=<alice@a.test> rcpts=1 size=1000 tls=no auth=- qp=11"),
            (T0 + 62, "event=accept ip=192.0.2.1 helo=a.test from=<alice@a.test> rcpts=2 size=2000 tls=no auth=- qp=12"),
            (T0 + 63, "event=accept ip=192.0.2.2 helo=b.test from=<bob@b.test> rcpts=1 size=3000 tls=yes auth=- qp=13"),
            (T0 + 70, "event=reject ip=203.0.113.5 reason=relay helo=x from=<s@spam.test> rcpt=<v@victim.test>"),
            (T0 + 71, "event=reject ip=203.0.113.5 reason=relay helo=x from=<s@spam.test> rcpt=<w@victim.test>"),
            (T0 + 80, "event=rbl ip=203.0.113.7 zone=zen.test result=listed code=451 text=\"listed at zen\""),
            (T0 + 81, "event=rbl ip=192.0.2.1 zone=zen.test result=clear"),
            (T0 + HOUR + 5, "event=accept ip=192.0.2.1 helo=a.test from=<alice@a.test> rcpts=1 size=500 tls=no auth=- qp=14"),
            (T0 + HOUR + 6, "event=reject ip=203.0.113.5 reason=unknownuser from=<s@spam.test> rcpt=<nobody@a.test>"),
            (T0 + HOUR + 7, "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=virus rule=clamd:/s:Eicar-Test-Signature detail=Eicar-Test-Signature copy=quarantine/new/1"),
            (T0 + HOUR + 8, "event=reject ip=192.0.2.10 reason=queue code=31 detail=\"refused\""),
            (T0 + HOUR + 9, "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=attachment rule=\".exe (filter.rules:3)\" detail=a.exe copy=quarantine/new/2"),
            (T0 + HOUR + 10, "event=brandnew ip=192.0.2.1"),
            (T0 + HOUR + 11, "postern-scan: refused: virus: Eicar-Test-Signature"),
        ],
    );
    i.write(
        "smtpd",
        "current",
        &[
            (T0 + 2 * HOUR + 1, "event=accept ip=192.0.2.3 helo=c.test from=<carol@c.test> rcpts=1 size=100 tls=yes auth=- qp=15"),
            (T0 + 2 * HOUR + 2, "event=accept ip=192.0.2.3 helo=c.test from=<carol@c.test> rcpts=1 size=100 tls=yes auth=- qp=16"),
            (T0 + 2 * HOUR + 3, "event=reject ip=198.51.100.1 reason=badmailfrom from=<bad@bad.test>"),
            (T0 + 2 * HOUR + 4, "event=authfail ip=198.51.100.2 user=alice@a.test reason=badpass delay=2000"),
            (T0 + 2 * HOUR + 6, "event=reject ip=198.51.100.2 reason=authfail user=alice@a.test mech=PLAIN"),
            (T0 + 2 * HOUR + 7, "event=reject ip=192.0.2.11 reason=hops hops=101"),
        ],
    );
    i.write(
        "submission",
        "current",
        &[(T0 + 3 * HOUR + 1, "event=accept ip=192.0.2.1 helo=a.test from=<alice@a.test> rcpts=3 size=700 tls=yes auth=alice@a.test qp=17")],
    );
    // send: the takeovers in an archive recovered after an unclean stop (.u).
    i.write(
        "send",
        &archive(T0 + 3 * HOUR + 30, "u"),
        &[
            (
                T0 + 3 * HOUR + 10,
                "event=new id=1 from=<alice@a.test> rcpts=1 local=0 remote=1 size=1000 priority=1",
            ),
            (
                T0 + 3 * HOUR + 11,
                "event=new id=2 from=<alice@a.test> rcpts=1 local=0 remote=1 size=2000 priority=1",
            ),
        ],
    );
    i.write(
        "send",
        "current",
        &[
            (T0 + 3 * HOUR + 40, "event=delivery id=1 rcpt=<x@far.test> kind=remote result=ok tries=1 text=\"250 ok\""),
            (T0 + 3 * HOUR + 41, "event=delivery id=2 rcpt=<y@Far.test> kind=remote result=defer tries=1 text=\"421 busy\""),
            (T0 + 3 * HOUR + 42, "event=retry id=2 next=1 tries=1"),
            (T0 + 3 * HOUR + 50, "event=delivery id=2 rcpt=<y@far.test> kind=remote result=ok tries=2 text=\"250 ok\""),
            (T0 + 3 * HOUR + 51, "event=delivery id=3 rcpt=<alice@a.test> kind=local result=ok tries=1 text=ok"),
            (T0 + 3 * HOUR + 52, "event=delivery id=4 rcpt=<z@gone.test> kind=remote result=fail tries=1 text=\"550 no\""),
        ],
    );
    i.write(
        "pop3d",
        "current",
        &[(T0 + 3 * HOUR + 5, "event=loginfail ip=198.51.100.3 tls=yes reason=auth user=bob@b.test mech=USER failures=1")],
    );
    i.write(
        "ratelimit",
        "current",
        &[(
            T0 + 3 * HOUR + 6,
            "event=ratelimit kind=sender key=alice@a.test count=90 rcpts=90 window=3600 action=block until=1700020000",
        )],
    );
    for (sub, n) in [("new", 1), ("mess", 2)] {
        let dir = i.home().join("queue").join(sub);
        fs::create_dir_all(&dir).unwrap();
        for k in 0..n {
            fs::write(dir.join(format!("{k}")), "x").unwrap();
        }
    }
    i
}

/// The cells after `label` on the report line that starts with it (split on 2+ spaces).
fn cells(report: &str, label: &str) -> Vec<String> {
    let line = report
        .lines()
        .find(|l| {
            l.strip_prefix(label)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("  "))
        })
        .unwrap_or_else(|| panic!("no line {label:?} in\n{report}"));
    line[label.len()..]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

fn count(report: &str, label: &str) -> String {
    cells(report, label).last().cloned().unwrap_or_default()
}

#[test]
fn text_report_counts_exactly() {
    let i = generated();
    let (code, out, err) = i.report(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("period     2023-11-14 22:01:00 to 2023-11-15 01:00:52"),
        "{out}"
    );
    assert!(
        out.contains("queue      3 messages (1 not yet preprocessed)"),
        "{out}"
    );
    assert_eq!(cells(&out, "in (smtpd)"), ["7", "7.4 kB"]);
    assert_eq!(cells(&out, "out (remote)"), ["2", "3.0 kB"]);
    assert_eq!(count(&out, "delivered locally"), "1");
    assert_eq!(count(&out, "remote deferred"), "1");
    assert_eq!(count(&out, "remote failed"), "1");
    assert_eq!(count(&out, "local deferred"), "0");
    assert_eq!(count(&out, "local failed"), "0");
    // hour: in, out, in bytes, rejected
    assert_eq!(cells(&out, "2023-11-14 22:00"), ["3", "0", "6.0 kB", "3"]);
    assert_eq!(cells(&out, "2023-11-14 23:00"), ["1", "0", "500 B", "3"]);
    assert_eq!(cells(&out, "2023-11-15 00:00"), ["2", "0", "200 B", "3"]);
    assert_eq!(cells(&out, "2023-11-15 01:00"), ["1", "2", "700 B", "2"]);
    for (label, n) in [
        ("relay", "2"),
        ("unknown user", "1"),
        ("RBL", "1"),
        ("bad sender", "1"),
        ("virus", "1"),
        ("content rule", "1"),
        ("MIME structure", "0"),
        ("rate limit", "1"),
        ("AUTH failure", "2"),
        ("AUTH required", "0"),
        ("access rule", "0"),
        ("other", "1"),
        ("total", "11"),
    ] {
        assert_eq!(count(&out, label), n, "{label} in\n{out}");
    }
    assert!(out.contains("(other: reject/hops 1)"), "{out}");
    assert_eq!(count(&out, "alice@a.test"), "4");
    assert_eq!(count(&out, "carol@c.test"), "2");
    assert_eq!(count(&out, "bob@b.test"), "1");
    assert_eq!(count(&out, "far.test"), "2");
    assert_eq!(count(&out, "gone.test"), "1");
    assert_eq!(count(&out, "a.test"), "1");
    assert_eq!(count(&out, "203.0.113.5"), "3");
    assert_eq!(count(&out, "192.0.2.10"), "2");
    assert_eq!(count(&out, "198.51.100.2"), "1");
    assert_eq!(count(&out, "Eicar-Test-Signature"), "1");
    // `event=brandnew`; postern-scan's own refusal text is known (its quarantine line counts).
    assert!(
        out.contains("1 line with an event the report does not know"),
        "{out}"
    );
    assert!(
        out.contains("pop3d 1, ratelimit 1, send 8, smtpd 21, submission 1"),
        "{out}"
    );
}

/// What a new admin's first week looked like (issue 20): the audit's relay probe,
/// submission clients told to log in, postern-scan refusing for every reason, local and
/// remote failures — each line as its program writes it.
#[test]
fn refusals_are_counted_as_what_they_are() {
    let i = Instance::new();
    i.write(
        "smtpd",
        "current",
        &[
            // posternctl audit: an unlikely recipient, then the relay tricks, from 127.0.0.200.
            (T0 + 1, "event=reject ip=127.0.0.200 reason=unknownuser helo=audit.example.net from=<postern-audit@relaytest.example.net> rcpt=<postern-audit-x1y2@example.test>"),
            (T0 + 2, "event=reject ip=127.0.0.200 reason=relay helo=audit.example.net from=<postern-audit@relaytest.example.net> rcpt=<postern-audit@relaytest.example.net>"),
            (T0 + 3, "event=reject ip=127.0.0.200 reason=relay helo=audit.example.net from=<postern-audit@relaytest.example.net> rcpt=<postern-audit%relaytest.example.net@example.test>"),
            // A stranger with the probe's HELO is still a blocked IP.
            (T0 + 4, "event=reject ip=203.0.113.5 reason=relay helo=audit.example.net from=<postern-audit@relaytest.example.net> rcpt=<v@victim.test>"),
            // postern-scan, in smtpd's log: its quarantine line, the old text line, smtpd's line.
            (T0 + 10, "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=attachment rule=\".exe (filter.rules:19)\" detail=\"Executable: a.exe\" copy=quarantine/new/1"),
            (T0 + 10, "postern-scan: refused: attachment: Executable: a.exe"),
            (T0 + 10, "event=reject ip=192.0.2.10 reason=queue helo=x from=<x@evil.test> code=31 detail=\"mail server permanently rejected message\""),
            (T0 + 11, "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=header rule=\"love you (filter.rules:40)\" detail=LoveLetter copy=quarantine/new/2"),
            (T0 + 11, "event=reject ip=192.0.2.10 reason=queue helo=x from=<x@evil.test> code=82 detail=\"message refused: LoveLetter\""),
            (T0 + 12, "event=quarantine ip=192.0.2.11 from=<y@evil.test> rcpts=1 reason=mime rule=structure detail=\"two different Content-Type headers\" copy=quarantine/new/3"),
            (T0 + 12, "postern-scan: refused: mime: two different Content-Type headers"),
            (T0 + 13, "event=quarantine ip=192.0.2.11 from=<y@evil.test> rcpts=1 reason=partial rule=message/partial detail=\"message/partial reassembles past any scanner; refused by default\" copy=quarantine/new/4"),
            (T0 + 14, "event=quarantine ip=192.0.2.12 from=<z@evil.test> rcpts=1 reason=virus rule=clamd:/run/clamav/clamd.ctl:Eicar-Test-Signature detail=Eicar-Test-Signature copy=quarantine/new/5"),
            (T0 + 14, "postern-scan: refused: virus: Eicar-Test-Signature"),
        ],
    );
    i.write(
        "submission",
        "current",
        &[
            (
                T0 + 20,
                "event=reject ip=192.0.2.50 reason=authrequired helo=laptop from=<alice@a.test>",
            ),
            (
                T0 + 21,
                "event=reject ip=192.0.2.50 reason=authrequired helo=laptop from=<alice@a.test>",
            ),
        ],
    );
    i.write(
        "send",
        "current",
        &[
            (T0 + 30, "event=new id=1 from=<alice@a.test> rcpts=3 local=1 remote=2 size=900 priority=1"),
            (T0 + 31, "event=delivery id=1 rcpt=<bob@a.test> kind=local result=ok tries=1 text=\"delivered to bob@a.test\""),
            (T0 + 32, "event=delivery id=1 rcpt=<x@far.test> kind=remote result=fail tries=1 text=\"550 no such user\""),
            (T0 + 33, "event=delivery id=1 rcpt=<y@far.test> kind=remote result=defer tries=1 text=\"421 busy\""),
            (T0 + 34, "event=hold id=1 reason=holdbulk"),
        ],
    );
    let (code, out, err) = i.report(&[]);
    assert_eq!(code, Some(0), "{err}");
    for (label, n) in [
        ("relay", "3"),
        ("unknown user", "1"),
        ("virus", "1"),
        ("content rule", "2"),
        ("MIME structure", "2"),
        ("AUTH failure", "0"),
        ("AUTH required", "2"),
        ("other", "0"),
        ("total", "11"),
    ] {
        assert_eq!(count(&out, label), n, "{label} in\n{out}");
    }
    assert!(
        out.contains("(3 of these were posternctl audit's own relay probe"),
        "{out}"
    );
    // Blocked: the stranger and the senders of refused content; never the probe, never a
    // client told to log in first.
    let blocked = out
        .split("top blocked IPs")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("no blocked IPs in\n{out}"));
    for ip in ["203.0.113.5", "192.0.2.10", "192.0.2.11", "192.0.2.12"] {
        assert!(blocked.contains(ip), "{ip} not blocked in\n{out}");
    }
    for ip in ["127.0.0.200", "192.0.2.50"] {
        assert!(!blocked.contains(ip), "{ip} listed as blocked in\n{out}");
    }
    assert_eq!(count(&out, "192.0.2.10"), "2");
    assert_eq!(count(&out, "delivered locally"), "1");
    assert_eq!(count(&out, "local deferred"), "0");
    assert_eq!(count(&out, "local failed"), "0");
    assert_eq!(count(&out, "remote deferred"), "1");
    assert_eq!(count(&out, "remote failed"), "1");
    assert!(
        !out.contains("the report does not know"),
        "every line is known:\n{out}"
    );

    let page = i.home().join("report.html");
    let (code, _, err) = i.report(&["--html", page.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let html = fs::read_to_string(&page).unwrap();
    assert!(
        html.contains(r#"<div class="k">Delivered locally</div><div class="v">1</div><div class="s">0 deferred · 0 failed</div>"#),
        "{html}"
    );
}

#[test]
fn since_leaves_out_older_lines_and_archives() {
    let i = generated();
    let (code, out, err) = i.report(&["--since", "2023-11-15 00:00"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("(since 2023-11-15 00:00:00)"), "{out}");
    assert_eq!(cells(&out, "in (smtpd)"), ["3", "900 B"]);
    assert_eq!(cells(&out, "out (remote)"), ["2", "3.0 kB"]);
    assert_eq!(count(&out, "relay"), "0");
    assert_eq!(count(&out, "virus"), "0");
    assert_eq!(count(&out, "AUTH failure"), "2");
    assert_eq!(count(&out, "total"), "5");
    assert!(!out.contains("2023-11-14 22:00"), "{out}");
    assert!(!out.contains("bob@b.test"), "{out}");
    // A stamp as multilog writes it works too.
    let label = Tai64n::from_unix(T0 + 3 * HOUR, 0).label();
    let (code, out, _) = i.report(&["--since", &label]);
    assert_eq!(code, Some(0));
    assert_eq!(cells(&out, "in (smtpd)"), ["1", "700 B"]);
}

#[test]
fn an_empty_instance_reports_nothing_without_failing() {
    let i = Instance::new();
    fs::create_dir_all(i.home().join("log")).unwrap();
    let (code, out, err) = i.report(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("period     no log lines"), "{out}");
    assert!(out.contains("queue      unknown"), "{out}");
    assert_eq!(count(&out, "total"), "0");
}

#[test]
fn bad_usage_exits_100_with_one_line() {
    let i = generated();
    for args in [
        &["--since", "yesterday"][..],
        &["--bogus"],
        &["--interval", "5"],
        &["--follow", "--interval", "0"],
        &["--follow", "--html", "x.html"],
    ] {
        let (code, out, err) = i.report(args);
        assert_eq!(code, Some(100), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("posternctl: usage: "), "{args:?}: {err}");
    }
    let (code, _, err) = posternctl()
        .args(["report", "--home", "/nonexistent/postern"])
        .output()
        .map(|o| {
            (
                o.status.code(),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, Some(111), "{err}");
    assert!(err.contains("/nonexistent/postern/log"), "{err}");
}

#[test]
fn html_report_has_the_charts_and_renders_in_chromium() {
    let i = generated();
    let page = i.home().join("report.html");
    let (code, out, err) = i.report(&["--html", page.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("HTML report written to"), "{out}");
    let html = fs::read_to_string(&page).unwrap();
    for id in [
        "chart-messages",
        "chart-volume",
        "chart-rejections",
        "chart-blocked-ips",
        "chart-senders",
        "chart-domains",
        "chart-viruses",
    ] {
        assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id}");
    }
    for external in ["<script", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(external), "{external} in the page");
    }

    let Some(chromium) = require("chromium", "chromium") else {
        return;
    };
    let profile = i.home().join("chromium-profile");
    let shot = i.home().join("report.png");
    let url = format!("file://{}", page.display());
    let chrome = |extra: &[&str]| {
        let mut cmd = Command::new(&chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url);
        run(&mut cmd, Duration::from_secs(120))
    };
    let (code, _, err) = chrome(&[&format!("--screenshot={}", shot.display())]);
    assert_eq!(code, Some(0), "chromium --screenshot: {err}");
    let png = fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "screenshot of {} bytes: blank?",
        png.len()
    );

    let (code, dom, err) = chrome(&["--dump-dom"]);
    assert_eq!(code, Some(0), "chromium --dump-dom: {err}");
    for id in ["chart-messages", "chart-rejections", "chart-senders"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} not in the DOM");
    }
    assert!(
        dom.matches("<rect").count() > 30,
        "bars missing from the DOM"
    );
    assert!(dom.contains("203.0.113.5"));
}

/// Lines of a running `--follow`, read on a thread.
fn lines_of(d: &mut Daemon) -> mpsc::Receiver<String> {
    let stdout = d.child_mut().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wait for a line containing `what`, returning it.
fn expect_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let mut found = None;
    expect_within(Duration::from_secs(20), what, || {
        while let Ok(line) = rx.try_recv() {
            if line.contains(what) {
                found = Some(line);
                return true;
            }
        }
        false
    });
    found.unwrap()
}

fn follow(i: &Instance) -> (Daemon, mpsc::Receiver<String>) {
    let mut cmd = posternctl();
    cmd.args(["report", "--follow", "--interval", "1", "--home"])
        .arg(i.home())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut d = Daemon::spawn("posternctl report --follow", cmd);
    let rx = lines_of(&mut d);
    expect_line(&rx, "posternctl report: following 5 logs");
    (d, rx)
}

#[test]
fn follow_counts_appended_lines_across_a_rotation_and_stops_on_sigterm() {
    let i = generated();
    let (mut d, rx) = follow(&i);
    // Lines already there are not counted: the first summaries say 0.
    expect_line(&rx, "in 0, out 0, rejected 0");
    let now = chrono::Utc::now().timestamp();
    i.write(
        "smtpd",
        "current",
        &[
            (
                now,
                "event=accept ip=192.0.2.1 from=<a@a.test> rcpts=1 size=1000",
            ),
            (
                now,
                "event=accept ip=192.0.2.1 from=<a@a.test> rcpts=1 size=1000",
            ),
            (now, "event=reject ip=203.0.113.5 reason=relay"),
        ],
    );
    expect_line(&rx, "in 2, out 0, rejected 1  |  queue 3");
    // multilog rotates: the rest of the old current goes to an archive, a new one starts.
    i.write(
        "smtpd",
        "current",
        &[(now, "event=accept ip=192.0.2.1 size=1")],
    );
    let smtpd = i.log("smtpd");
    fs::rename(smtpd.join("current"), smtpd.join(archive(now, "s"))).unwrap();
    i.write(
        "smtpd",
        "current",
        &[(now, "event=rbl ip=203.0.113.7 result=listed")],
    );
    i.write(
        "send",
        "current",
        &[(
            now,
            "event=delivery id=9 rcpt=<r@far.test> kind=remote result=ok",
        )],
    );
    expect_line(&rx, "in 3, out 1, rejected 2");
    d.signal(Signal::SIGTERM as i32);
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn follow_exits_0_on_sigint() {
    let i = generated();
    let (mut d, rx) = follow(&i);
    expect_line(&rx, "last 1s:");
    d.signal(Signal::SIGINT as i32);
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("exits on SIGINT");
    assert_eq!(status.code(), Some(0));
}

/// A workspace program; the test fails when this build has not made it.
fn producer(name: &str) -> PathBuf {
    postern_testkit::workspace_bin(name)
}

#[test]
fn counts_what_the_real_smtpd_logs_through_multilog() {
    let (smtpd, multilog) = (producer("postern-smtpd"), producer("postern-multilog"));
    let i = Instance::new();
    fs::create_dir_all(i.home().join("control")).unwrap();
    fs::write(i.home().join("control/rcpthosts"), "example.test\n").unwrap();
    fs::write(i.home().join("control/me"), "mx.example.test\n").unwrap();
    let queue = i.home().join("fake-queue");
    postern_testkit::write_script(&queue, "#!/bin/sh\ncat >/dev/null\nexit 0\n");
    let log = i.log("smtpd");
    let session = |ip: &str, dialog: &str| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"printf "$DIALOG" | "$SMTPD" 2>&1 >/dev/null | "$MULTILOG" t "$LOG""#)
            .env("DIALOG", dialog)
            .env("SMTPD", &smtpd)
            .env("MULTILOG", &multilog)
            .env("LOG", &log)
            .env("POSTERN_HOME", i.home())
            .env("TCPREMOTEIP", ip)
            .env("PROTO", "TCP")
            .env("QMAILQUEUE", &queue);
        let (code, _, err) = run(&mut cmd, RUN);
        assert_eq!(code, Some(0), "{err}");
    };
    session(
        "203.0.113.9",
        r"EHLO a.test\r\nMAIL FROM:<s@spam.test>\r\nRCPT TO:<v@victim.test>\r\nQUIT\r\n",
    );
    session(
        "192.0.2.4",
        r"EHLO b.test\r\nMAIL FROM:<bob@b.test>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\nSubject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n",
    );
    let (code, out, err) = i.report(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(cells(&out, "in (smtpd)")[0], "1", "{out}");
    assert_eq!(count(&out, "relay"), "1", "{out}");
    assert_eq!(count(&out, "bob@b.test"), "1", "{out}");
    assert_eq!(count(&out, "203.0.113.9"), "1", "{out}");
    assert!(!out.contains("the report does not know"), "{out}");
}

/// The chain an admin runs: the real postern-smtpd hands a message to the real
/// postern-scan, which refuses an attachment. The client is told which rule refused it,
/// and the report counts what the two programs logged as one content-rule refusal.
#[test]
fn a_refused_attachment_through_the_real_smtpd_and_scan() {
    let (smtpd, scan, multilog) = (
        producer("postern-smtpd"),
        producer("postern-scan"),
        producer("postern-multilog"),
    );
    let i = Instance::new();
    for d in [
        "control",
        "quarantine/tmp",
        "quarantine/new",
        "quarantine/cur",
    ] {
        fs::create_dir_all(i.home().join(d)).unwrap();
    }
    fs::write(i.home().join("control/rcpthosts"), "example.test\n").unwrap();
    fs::write(i.home().join("control/me"), "mx.example.test\n").unwrap();
    // No SPF/DKIM/DMARC: they would ask the system's DNS about evil.test.
    fs::write(i.home().join("control/authchecks"), "0\n").unwrap();
    let log = i.log("smtpd");
    let dialog = "EHLO c.test\r\nMAIL FROM:<x@evil.test>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\nSubject: invoice\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: application/octet-stream; name=\"invoice.pdf.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAA==\r\n--B--\r\n.\r\nQUIT\r\n";
    let replies = i.home().join("replies");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"printf '%s' "$DIALOG" | "$SMTPD" 2>&1 >"$REPLIES" | "$MULTILOG" t "$LOG""#)
        .env("DIALOG", dialog)
        .env("SMTPD", &smtpd)
        .env("MULTILOG", &multilog)
        .env("LOG", &log)
        .env("REPLIES", &replies)
        .env("POSTERN_HOME", i.home())
        .env("TCPREMOTEIP", "192.0.2.66")
        .env("PROTO", "TCP")
        .env("QMAILQUEUE", &scan);
    let (code, _, err) = run(&mut cmd, RUN);
    assert_eq!(code, Some(0), "{err}");
    let replies = fs::read_to_string(&replies).unwrap();
    assert!(
        replies.contains("\r\n554 5.7.1 message refused: Executable File (.exe)\r\n"),
        "{replies}"
    );
    let (code, out, err) = i.report(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(count(&out, "content rule"), "1", "{out}");
    assert_eq!(count(&out, "total"), "1", "{out}");
    assert_eq!(count(&out, "192.0.2.66"), "1", "{out}");
    assert!(!out.contains("the report does not know"), "{out}");
}
