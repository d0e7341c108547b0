//! postern-ratelimit end to end: the real daemon, copied into an instance's bin/ beside a
//! postern-queue stand-in that records each alert, following a multilog-style directory
//! into which the test writes smtpd `event=accept` lines with TAI64N stamps.

use postern_common::tai64n::Tai64n;
use postern_testkit::{
    copy_executable, expect_within, require, run, tempdir, wait_until, write_script, Daemon,
    TempDir,
};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// For what should happen: generous, so a busy machine does not fail a test.
const WAIT: Duration = Duration::from_secs(30);

/// Every threshold off, so a test turns on only what it looks at.
const ALL_OFF: &str = "sender warn 0 block 0 paranoid 0\nsender rcpts warn 0 block 0 paranoid 0\n\
    ip warn 0 block 0 paranoid 0\nip rcpts warn 0 block 0 paranoid 0\n\
    auth warn 0 block 0 paranoid 0\nauth rcpts warn 0 block 0 paranoid 0\nhijack factor 0\n";

struct Setup {
    dir: TempDir,
    runs: usize,
}

impl Setup {
    /// An instance whose `control/ratelimit` is [`ALL_OFF`] followed by `settings`.
    fn new(settings: &str) -> Setup {
        let dir = tempdir();
        let home = dir.path();
        for d in ["bin", "control", "queued", "log/smtpd"] {
            fs::create_dir_all(home.join(d)).unwrap();
        }
        copy_executable(
            Path::new(env!("CARGO_BIN_EXE_postern-ratelimit")),
            &home.join("bin/postern-ratelimit"),
        );
        write_script(
            &home.join("bin/postern-queue"),
            &format!(
                "#!/bin/sh\nn=$(ls {q} | grep -c msg)\ncat > {q}/$n.msg.tmp\ncat <&1 > {q}/$n.env\nmv {q}/$n.msg.tmp {q}/$n.msg\nexit 0\n",
                q = home.join("queued").display()
            ),
        );
        // A fork elsewhere in the test binary may still hold the copy's write descriptor
        // for a moment (ETXTBSY): wait until the copy can be executed.
        let ready = wait_until(WAIT, || {
            Command::new(home.join("bin/postern-ratelimit"))
                .arg("-?")
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok()
        });
        assert!(ready, "the copied postern-ratelimit cannot be executed");
        fs::write(home.join("control/me"), "mx.example.test\n").unwrap();
        fs::write(home.join("control/rcpthosts"), "example.test\n").unwrap();
        let s = Setup { dir, runs: 0 };
        s.control("ratelimit", &format!("{ALL_OFF}{settings}"));
        s
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn logdir(&self) -> PathBuf {
        self.home().join("log/smtpd")
    }

    fn control(&self, name: &str, text: &str) {
        fs::write(self.home().join("control").join(name), text).unwrap();
    }

    fn read_control(&self, name: &str) -> String {
        fs::read_to_string(self.home().join("control").join(name)).unwrap_or_default()
    }

    /// Start the daemon on log/smtpd; its log goes to `ratelimit.N.log`.
    fn start(&mut self) -> Daemon {
        self.runs += 1;
        let log = File::create(self.log_path()).unwrap();
        let mut cmd = Command::new(self.home().join("bin/postern-ratelimit"));
        cmd.arg(self.logdir())
            .env("POSTERN_HOME", self.home())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        let d = Daemon::spawn("postern-ratelimit", cmd);
        expect_within(WAIT, "event=start", || self.log().contains("event=start"));
        d
    }

    fn log_path(&self) -> PathBuf {
        self.home().join(format!("ratelimit.{}.log", self.runs))
    }

    /// The current run's log.
    fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    fn wait_log(&self, needle: &str) -> String {
        let seen = wait_until(WAIT, || !self.log_lines(needle).is_empty());
        assert!(seen, "no {needle:?} within {WAIT:?} in:\n{}", self.log());
        self.log_lines(needle).remove(0)
    }

    /// Append accepted-message lines to `current`, as multilog would.
    fn accept(&self, n: usize, ip: &str, from: &str, auth: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logdir().join("current"))
            .unwrap();
        for _ in 0..n {
            writeln!(
                f,
                "{} event=accept ip={ip} helo=client.test from=<{from}> rcpts=1 size=321 tls=no auth={auth} qp=77",
                Tai64n::now().label()
            )
            .unwrap();
        }
    }

    fn mail_from(&self, n: usize, from: &str) {
        self.accept(n, "192.0.2.7", from, "-");
    }

    /// Wait until the daemon has read `current` to its end (its state file says so).
    fn wait_processed(&self) {
        let current = self.logdir().join("current");
        let state = self.home().join("control/ratelimit.state");
        let label = format!(" {}", self.logdir().display());
        expect_within(WAIT, "current read to its end", || {
            let meta = fs::metadata(&current).unwrap();
            let want = format!("pos {} {} {}{label}", meta.dev(), meta.ino(), meta.len());
            fs::read_to_string(&state)
                .map(|s| s.lines().any(|l| l == want))
                .unwrap_or(false)
        });
    }

    /// Rotate like multilog: `current` becomes `@TAI64N.s`, a new empty `current` starts.
    fn rotate(&self) {
        let name = format!("{}.s", Tai64n::now().label());
        fs::rename(self.logdir().join("current"), self.logdir().join(name)).unwrap();
        File::create(self.logdir().join("current")).unwrap();
    }

    /// The alerts queued so far: (message, envelope).
    fn alerts(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for n in 0.. {
            let m = self.home().join(format!("queued/{n}.msg"));
            if !m.exists() {
                break;
            }
            out.push((
                fs::read_to_string(m).unwrap(),
                fs::read(self.home().join(format!("queued/{n}.env"))).unwrap(),
            ));
        }
        out
    }

    fn wait_alerts(&self, n: usize) -> Vec<(String, Vec<u8>)> {
        expect_within(WAIT, &format!("{n} alerts"), || self.alerts().len() >= n);
        self.alerts()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The UNTIL of the line `prefix UNTIL` in `text`.
fn until_of(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|u| u.trim().parse().ok())
}

#[test]
fn a_burst_from_one_sender_is_warned_then_blocked() {
    let mut s = Setup::new("window 3600\ncooldown 600\nsender warn 2 block 4\nalertinterval 1\n");
    let _d = s.start();
    s.mail_from(2, "Spammer@Bad.TEST");
    s.wait_processed();
    assert!(s.alerts().is_empty(), "at the threshold is not over it");

    s.mail_from(1, "spammer@bad.test");
    let warn = s.wait_log("action=warn");
    assert!(
        warn.contains("event=ratelimit kind=sender key=spammer@bad.test/192.0.2.0/24 count=3 rcpts=3 window=3600 action=warn"),
        "{warn}"
    );
    let alerts = s.wait_alerts(1);
    assert_eq!(
        alerts[0].1, b"F\0Tpostmaster@example.test\0\0",
        "from <>, to alertto's default"
    );
    assert!(
        alerts[0].0.contains(
            "Subject: [postern] rate limit warning: sender spammer@bad.test/192.0.2.0/24\n"
        ),
        "{}",
        alerts[0].0
    );
    assert!(!s.home().join("control/ratelimit.blocked").exists());

    let before = unix_now();
    s.mail_from(2, "spammer@bad.test");
    let block = s.wait_log("action=block");
    let after = unix_now();
    assert!(
        block.contains("key=spammer@bad.test/192.0.2.0/24 count=5 "),
        "{block}"
    );
    let blocked = s.read_control("ratelimit.blocked");
    let until = until_of(&blocked, "sender spammer@bad.test/192.0.2.0/24 ").expect(&blocked);
    // The daemon reads the clock once per pass, before it reads the new lines: a line
    // written just after a second boundary may be judged with the second before it.
    assert!(
        (before + 600 - 1..=after + 600).contains(&until),
        "{until} {blocked}"
    );
    let alerts = s.wait_alerts(2);
    assert!(alerts[1]
        .0
        .contains("Subject: [postern] rate limit: sender spammer@bad.test/192.0.2.0/24 blocked\n"));

    // More mail in the same window: no more alerts, the block stays.
    s.mail_from(3, "spammer@bad.test");
    s.wait_processed();
    assert_eq!(s.alerts().len(), 2, "one alert per level per window");
    assert_eq!(s.log_lines("event=ratelimit").len(), 2);
}

#[test]
fn alertto_is_used_and_paranoid_holds_bulk_mail() {
    let mut s = Setup::new("cooldown 900\nip warn 1 paranoid 3\nholdbulk yes\nalertinterval 1\n");
    s.control("alertto", "noc@example.test\n");
    let _d = s.start();
    s.accept(4, "203.0.113.66", "a@one.test", "-");
    s.wait_log("action=paranoid");
    let alerts = s.wait_alerts(2);
    assert_eq!(alerts[1].1, b"F\0Tnoc@example.test\0\0");
    assert!(
        alerts[1]
            .0
            .contains("Subject: [postern] PARANOID: ip 203.0.113.66\n"),
        "{}",
        alerts[1].0
    );
    let hold = s.read_control("holdbulk");
    let until: u64 = hold.lines().next().unwrap().parse().unwrap();
    assert!(until >= unix_now() + 800, "{hold}");
    assert!(s.log().contains("event=holdbulk action=set until="));
}

#[test]
fn the_ignore_list_is_honoured() {
    let mut s = Setup::new("sender warn 1\nip warn 1\nauth warn 1\n");
    s.control(
        "ratelimit.ignore",
        "# friends\n@friends.test\n192.0.2.0/24\nauth:webmail\n",
    );
    let _d = s.start();
    s.accept(3, "192.0.2.9", "a@friends.test", "webmail");
    s.wait_processed();
    assert!(s.log_lines("event=ratelimit").is_empty(), "{}", s.log());
    assert!(s.alerts().is_empty());

    // The IP is still ignored, the sender is not.
    s.accept(2, "192.0.2.9", "b@other.test", "-");
    let warn = s.wait_log("action=warn");
    assert!(
        warn.contains("kind=sender key=b@other.test/192.0.2.0/24 count=2"),
        "{warn}"
    );
    s.wait_processed();
    assert_eq!(s.log_lines("event=ratelimit").len(), 1, "{}", s.log());
}

/// A forged sender cannot get its owner blocked everywhere: unauthenticated mail counts
/// for the sender together with the client's network, authenticated mail for the login
/// only. Three messages from each of two networks under `block 4` block nobody; two more
/// from one network block the sender from that network alone.
#[test]
fn senders_count_per_network_and_logins_apart() {
    let mut s = Setup::new("sender block 4\nauth block 100\n");
    let _d = s.start();
    s.accept(3, "192.0.2.7", "victim@good.test", "-");
    s.accept(3, "198.51.100.7", "victim@good.test", "-");
    // Sent by the owner, logged in: counted for the login, not the address.
    s.accept(5, "192.0.2.8", "victim@good.test", "victim@good.test");
    s.wait_processed();
    assert!(s.log_lines("action=block").is_empty(), "{}", s.log());
    s.accept(2, "192.0.2.99", "victim@good.test", "-");
    let block = s.wait_log("action=block");
    assert!(
        block.contains("kind=sender key=victim@good.test/192.0.2.0/24 count=5 "),
        "{block}"
    );
    let blocked = s.read_control("ratelimit.blocked");
    assert!(
        blocked.contains("sender victim@good.test/192.0.2.0/24 "),
        "{blocked}"
    );
    assert!(!blocked.contains("198.51.100"), "{blocked}");
}

/// Alert mails come at most one per `alertinterval`: the first event at once, the
/// events of the interval after it in one digest that lists them all.
#[test]
fn alerts_are_sent_as_one_digest_per_interval() {
    let mut s = Setup::new("sender warn 1 block 2\nalertinterval 3\n");
    let _d = s.start();
    s.mail_from(2, "first@bad.test");
    let first = s.wait_alerts(1);
    assert!(first[0]
        .0
        .contains("Subject: [postern] rate limit warning: sender first@bad.test"));
    // Four more events (two senders × warn and block) within the interval.
    s.accept(3, "198.51.100.7", "second@bad.test", "-");
    s.accept(3, "198.51.100.7", "third@bad.test", "-");
    let alerts = s.wait_alerts(2);
    let digest = &alerts[1].0;
    assert!(
        digest.contains("Subject: [postern] rate limit: 4 events\n"),
        "{digest}"
    );
    for event in [
        "- [postern] rate limit warning: sender second@bad.test/198.51.100.0/24\n",
        "- [postern] rate limit: sender second@bad.test/198.51.100.0/24 blocked\n",
        "- [postern] rate limit warning: sender third@bad.test/198.51.100.0/24\n",
        "- [postern] rate limit: sender third@bad.test/198.51.100.0/24 blocked\n",
    ] {
        assert!(digest.contains(event), "{event} in {digest}");
    }
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(s.alerts().len(), 2, "one digest, not a mail per event");
}

/// postern-scan's refusals (its `event=quarantine` lines in the smtpd log) are alert
/// events in the same digest: the first mailed at once, a storm after it in one mail.
#[test]
fn quarantined_messages_are_alerts_in_the_digest() {
    let mut s = Setup::new("alertinterval 3\n");
    let _d = s.start();
    let quarantine = |n: usize| {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(s.logdir().join("current"))
            .unwrap();
        writeln!(
            f,
            "{} event=quarantine ip=203.0.113.{n} from=<spam{n}@bad.test> rcpts=1 reason=virus rule=clamd:/run/clamav/clamd.ctl:Eicar-Test-Signature detail=Eicar-Test-Signature copy=quarantine/new/17651000{n:02}.M1P1Q1.mx",
            Tai64n::now().label()
        )
        .unwrap();
    };
    quarantine(1);
    let first = s.wait_alerts(1);
    let mail = &first[0].0;
    assert!(
        mail.contains("Subject: [postern] message quarantined: virus\n"),
        "{mail}"
    );
    assert!(mail.contains("Client IP:  203.0.113.1\n"), "{mail}");
    assert!(
        mail.contains("posternctl quarantine release 1765100001.M1P1Q1.mx"),
        "{mail}"
    );
    for n in 2..=6 {
        quarantine(n);
    }
    let alerts = s.wait_alerts(2);
    let digest = &alerts[1].0;
    assert!(
        digest.contains("Subject: [postern] alerts: 5 events\n"),
        "{digest}"
    );
    assert_eq!(
        digest
            .matches("- [postern] message quarantined: virus\n")
            .count(),
        5,
        "{digest}"
    );
    assert!(digest.contains("<spam6@bad.test>"), "{digest}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(s.alerts().len(), 2, "one digest, not a mail per refusal");
}

/// With `alertinterval 0` postern-scan mails each refusal itself: the rate limiter
/// leaves its lines alone (no second alert for the same message).
#[test]
fn with_alertinterval_0_quarantines_are_left_to_postern_scan() {
    let mut s = Setup::new("sender warn 1\nalertinterval 0\n");
    let _d = s.start();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(s.logdir().join("current"))
        .unwrap();
    writeln!(
        f,
        "{} event=quarantine ip=203.0.113.1 from=<a@bad.test> rcpts=1 reason=virus rule=x detail=y copy=quarantine/new/1.M1P1Q1.mx",
        Tai64n::now().label()
    )
    .unwrap();
    drop(f);
    // A rate-limit warning after it: when its alert is there, the line before it was
    // read too, and gave no alert of its own.
    s.mail_from(2, "first@bad.test");
    let alerts = s.wait_alerts(1);
    std::thread::sleep(Duration::from_secs(2));
    let alerts_now = s.alerts();
    assert_eq!(alerts_now.len(), 1, "{alerts_now:?}");
    assert!(
        alerts[0].0.contains("rate limit warning"),
        "{}",
        alerts[0].0
    );
}

/// The storm trigger: more than `total` unauthenticated messages in the window over
/// all senders (none of them over its own limit) writes control/holdbulk and alerts;
/// authenticated mail does not count.
#[test]
fn a_storm_over_many_senders_sets_holdbulk() {
    let mut s = Setup::new("total 20\nalertinterval 1\n");
    let _d = s.start();
    for i in 0..10 {
        s.accept(
            1,
            "192.0.2.7",
            &format!("user{i}@outside.test"),
            "alice@example.test",
        );
    }
    for i in 0..20 {
        s.accept(
            1,
            &format!("203.0.113.{i}"),
            &format!("bot{i}@botnet.test"),
            "-",
        );
    }
    s.wait_processed();
    assert!(
        !s.home().join("control/holdbulk").exists(),
        "20 is not over 20"
    );
    s.accept(1, "203.0.113.99", "bot99@botnet.test", "-");
    let line = s.wait_log("kind=total");
    assert!(
        line.contains("event=ratelimit kind=total key=all count=21 rcpts=21 window=3600 action=holdbulk until="),
        "{line}"
    );
    let holdbulk = s.read_control("holdbulk");
    assert!(
        holdbulk.contains("postern-ratelimit: total all went paranoid"),
        "{holdbulk}"
    );
    let alert = &s.wait_alerts(1)[0].0;
    assert!(
        alert.contains("Subject: [postern] STORM: inbound mail held"),
        "{alert}"
    );
}

#[test]
fn blocks_expire_after_the_cooldown() {
    let mut s = Setup::new("cooldown 1\nsender block 1\n");
    s.control("ratelimit.blocked", "ip 198.51.100.1 9999999999\n");
    let _d = s.start();
    s.mail_from(2, "burst@bad.test");
    s.wait_log("action=block");
    assert!(s
        .read_control("ratelimit.blocked")
        .contains("sender burst@bad.test/192.0.2.0/24 "));
    let expire = s.wait_log("action=expire");
    assert!(
        expire
            .contains("event=ratelimit kind=sender key=burst@bad.test/192.0.2.0/24 action=expire list=blocked"),
        "{expire}"
    );
    let blocked = s.read_control("ratelimit.blocked");
    assert!(!blocked.contains("burst@bad.test"), "{blocked}");
    assert!(
        blocked.contains("ip 198.51.100.1 9999999999\n"),
        "entries the admin wrote are kept: {blocked}"
    );
    // Still over the limit after the block expired: blocked again.
    s.mail_from(1, "burst@bad.test");
    expect_within(WAIT, "a second block", || {
        s.log_lines("action=block").len() == 2
    });
}

#[test]
fn a_hijacked_account_is_blocked_and_its_outbound_mail_held() {
    let mut s = Setup::new("holdtime 7200\nauth block 3\nalertinterval 1\n");
    let _d = s.start();
    let before = unix_now();
    s.accept(
        4,
        "198.51.100.20",
        "alice@example.test",
        "alice@example.test",
    );
    s.wait_log("action=hold");
    let after = unix_now();
    let hold = s.read_control("ratelimit.holdauth");
    let until = until_of(&hold, "alice@example.test ").expect(&hold);
    // As above: the daemon's clock reading may be from the second before.
    assert!(
        (before + 7200 - 1..=after + 7200).contains(&until),
        "{hold}"
    );
    let blocked = s.read_control("ratelimit.blocked");
    assert!(
        until_of(&blocked, "auth alice@example.test ").is_some(),
        "{blocked}"
    );
    let alerts = s.wait_alerts(2);
    assert!(alerts.iter().any(|a| a.0.contains(
        "Subject: [postern] HIJACKED? account alice@example.test: outbound mail held\n"
    )));
    let line = s.wait_log("action=hold");
    assert!(
        line.contains(
            "kind=auth key=alice@example.test count=4 rcpts=4 window=3600 action=hold until="
        ),
        "{line}"
    );
}

#[test]
fn auth_logins_bypass_ratelimit_blocks_by_changing_case() {
    // The user database lower-cases logins: `Alice@Example.TEST` is alice's account, and
    // its messages count against the same limit, under the one lower-case key smtpd
    // compares with.
    let mut s = Setup::new("holdtime 7200\nauth block 3\n");
    let _d = s.start();
    s.accept(
        2,
        "198.51.100.20",
        "alice@example.test",
        "alice@example.test",
    );
    s.accept(
        2,
        "198.51.100.21",
        "alice@example.test",
        "Alice@Example.TEST",
    );
    let line = s.wait_log("action=hold");
    assert!(
        line.contains("kind=auth key=alice@example.test count=4 "),
        "{line}"
    );
    let blocked = s.read_control("ratelimit.blocked");
    assert!(
        until_of(&blocked, "auth alice@example.test ").is_some(),
        "{blocked}"
    );
    assert!(!blocked.contains("Alice"), "{blocked}");
}

#[test]
fn rotation_is_followed_without_losing_or_double_counting() {
    let mut s = Setup::new("sender warn 2 block 5\n");
    let _d = s.start();
    s.mail_from(2, "r@bad.test");
    s.wait_processed();
    s.rotate();
    s.mail_from(1, "r@bad.test");
    let warn = s.wait_log("action=warn");
    assert!(warn.contains("count=3 "), "{warn}");
    assert!(s.log().contains("action=rotate"));
    // Lines written just before a rotation are read from the renamed file.
    s.mail_from(2, "r@bad.test");
    s.rotate();
    s.wait_processed();
    assert!(
        s.log_lines("action=block").is_empty(),
        "5 is not over 5: {}",
        s.log()
    );
    s.mail_from(1, "r@bad.test");
    let block = s.wait_log("action=block");
    assert!(block.contains("count=6 "), "{block}");
}

#[test]
fn a_restart_neither_recounts_nor_forgets() {
    let mut s = Setup::new("sender warn 2 block 4\n");
    let mut d = s.start();
    s.mail_from(2, "x@bad.test");
    s.wait_processed();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(WAIT).expect("exits on TERM");
    assert_eq!(status.code(), Some(0));
    assert!(s.log().contains("event=stop"));
    drop(d);

    let mut d = s.start();
    let resume = s.wait_log("action=resume");
    let len = fs::metadata(s.logdir().join("current")).unwrap().len();
    assert!(
        resume.ends_with(&format!("file=current action=resume offset={len}")),
        "resumes after the lines already read: {resume}"
    );
    s.wait_processed();
    assert!(
        s.log_lines("action=warn").is_empty(),
        "re-counted: {}",
        s.log()
    );
    // The two lines before the restart still count: the third is over `warn 2`.
    s.mail_from(1, "x@bad.test");
    let warn = s.wait_log("action=warn");
    assert!(warn.contains("count=3 "), "{warn}");
    s.wait_alerts(1);

    // A second restart keeps the "already warned" mark: no second warning.
    d.signal(libc::SIGTERM);
    d.wait_exit(WAIT).expect("exits on TERM");
    drop(d);
    let _d = s.start();
    s.wait_log("action=resume");
    s.mail_from(1, "x@bad.test");
    s.wait_processed();
    assert!(s.log_lines("action=warn").is_empty(), "{}", s.log());
    s.mail_from(1, "x@bad.test");
    let block = s.wait_log("action=block");
    assert!(block.contains("count=5 "), "{block}");
    assert_eq!(s.wait_alerts(2).len(), 2);
}

#[test]
fn sighup_rereads_the_settings() {
    let mut s = Setup::new("sender warn 100\n");
    let d = s.start();
    s.mail_from(2, "h@bad.test");
    s.wait_processed();
    s.control("ratelimit", &format!("{ALL_OFF}sender warn 2\n"));
    d.signal(libc::SIGHUP);
    s.wait_log("event=reload");
    s.mail_from(1, "h@bad.test");
    let warn = s.wait_log("action=warn");
    assert!(warn.contains("count=3 "), "{warn}");
}

#[test]
fn bad_settings_and_usage_are_refused() {
    let s = Setup::new("window soon\n");
    let bin = s.home().join("bin/postern-ratelimit");
    let (code, _, err) = run(
        Command::new(&bin)
            .env("POSTERN_HOME", s.home())
            .arg(s.logdir()),
        WAIT,
    );
    assert_eq!(code, Some(111));
    assert!(
        err.starts_with("postern-ratelimit: fatal: control/ratelimit:8: needs a number of seconds"),
        "{err}"
    );
    let (code, _, err) = run(
        Command::new(&bin)
            .env("POSTERN_HOME", s.home())
            .arg(s.logdir())
            .arg(s.logdir()),
        WAIT,
    );
    assert_eq!(
        code,
        Some(100),
        "the same log twice would count twice: {err}"
    );
    let (code, _, err) = run(
        Command::new(&bin).env("POSTERN_HOME", s.home()).arg("-x"),
        WAIT,
    );
    assert_eq!(code, Some(100));
    assert_eq!(
        err,
        "postern-ratelimit: usage: postern-ratelimit [-s statefile] [logdir ...]\n"
    );
}

#[test]
fn a_user_far_above_their_own_average_is_held() {
    // Only the moving-average rule: `auth block` is off.
    let mut s = Setup::new("hijack factor 5 min 3 learn 24\n");
    let period = unix_now() / 3600;
    s.control(
        "ratelimit.state",
        &format!(
            "base {period} 0 30 1.1 bob@example.test\nbase {period} 0 30 10 carol@example.test\n"
        ),
    );
    let _d = s.start();
    s.accept(
        6,
        "198.51.100.30",
        "carol@example.test",
        "carol@example.test",
    );
    s.wait_processed();
    assert!(
        s.log_lines("event=ratelimit").is_empty(),
        "6 is normal for carol: {}",
        s.log()
    );
    s.accept(6, "198.51.100.31", "bob@example.test", "bob@example.test");
    let hold = s.wait_log("action=hold");
    assert!(
        hold.contains("kind=auth key=bob@example.test count=6 "),
        "more than 5 x 1.1: {hold}"
    );
    assert!(s
        .read_control("ratelimit.holdauth")
        .contains("bob@example.test "));
    assert!(s
        .read_control("ratelimit.blocked")
        .contains("auth bob@example.test "));
    assert!(!s.read_control("ratelimit.holdauth").contains("carol"));
}

#[test]
fn a_block_that_cannot_be_written_is_retried() {
    let mut s = Setup::new("sender block 1\n");
    let blocked = s.home().join("control/ratelimit.blocked");
    fs::create_dir(&blocked).unwrap(); // unreadable as a file
    let _d = s.start();
    s.mail_from(2, "r@bad.test");
    let err = s.wait_log("event=error what=write");
    assert!(err.contains("ratelimit.blocked"), "{err}");
    fs::remove_dir(&blocked).unwrap();
    expect_within(WAIT, "the block written on retry", || {
        s.read_control("ratelimit.blocked")
            .contains("\nsender r@bad.test/192.0.2.0/24 ")
    });
}

#[test]
fn follows_the_classic_multilog_across_its_rotations() {
    let Some(multilog) = require("multilog", "daemontools") else {
        return;
    };
    let mut s = Setup::new("sender warn 99 block 100\n");
    let _d = s.start();
    // It looked before multilog started: whatever multilog writes and rotates is new.
    s.wait_log("file=current action=wait");
    // Files of at most 4096 bytes: 100 lines of about 130 bytes rotate several times.
    let mut ml = Command::new(multilog)
        .args(["t", "s4096", "n50"])
        .arg(s.logdir())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = ml.stdin.take().unwrap();
        for i in 0..100 {
            writeln!(
                input,
                "event=accept ip=192.0.2.{} helo=h from=<m@bad.test> rcpts=1 size=100 tls=no auth=- qp={i}",
                i % 50
            )
            .unwrap();
        }
    }
    assert!(ml.wait().unwrap().success());
    let rotated = fs::read_dir(s.logdir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('@')
        })
        .count();
    assert!(rotated >= 2, "multilog rotated {rotated} times");
    let warn = s.wait_log("action=warn");
    assert!(
        warn.contains("key=m@bad.test/192.0.2.0/24 count=100 "),
        "{warn}"
    );
    s.wait_processed();
    assert!(
        s.log_lines("action=block").is_empty(),
        "exactly 100 lines counted: {}",
        s.log()
    );
}
