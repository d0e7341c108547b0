//! `posternctl report --metrics FILE`: a fixture instance (multilog logs with real
//! TAI64N stamps, a queue with an old message, a quarantine, a certificate made by
//! openssl), the file parsed by a real parser — Python's `prometheus_client` text
//! parser (Debian's python3-prometheus-client) — and every family's name, type and
//! value checked against the fixture.

use postern_common::tai64n::Tai64n;
use postern_testkit::{interop_required, require, run, tempdir};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

const T0: i64 = 1_699_999_200;
const RUN: Duration = Duration::from_secs(60);

fn write_log(home: &Path, service: &str, lines: &[&str]) {
    let dir = home.join("log").join(service);
    fs::create_dir_all(&dir).unwrap();
    let mut f = fs::File::create(dir.join("current")).unwrap();
    for (i, line) in lines.iter().enumerate() {
        let stamp = Tai64n::from_unix(T0 + i as i64, 0).label();
        writeln!(f, "{stamp} {line}").unwrap();
    }
}

/// Debian's python3 (where python3-prometheus-client installs), else any python3.
fn python() -> String {
    if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

/// The parser's view: family name → (type, [(sample name, labels "k=v,…", value)]).
type Families = BTreeMap<String, (String, Vec<(String, String, f64)>)>;

const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print("\t".join([fam.name, fam.type, s.name, labels, repr(s.value)]))
"#;

fn parse(file: &Path) -> Option<Families> {
    let probe = Command::new(python())
        .args(["-c", "import prometheus_client"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        if interop_required() {
            panic!(
                "python3-prometheus-client is required but not installed; \
                 scripts/test installs it when run as root"
            );
        }
        eprintln!("skipped: python3-prometheus-client not installed; scripts/test installs it");
        return None;
    }
    let (code, out, err) = run(Command::new(python()).args(["-c", PARSE]).arg(file), RUN);
    assert_eq!(code, Some(0), "prometheus_client refused the file: {err}");
    let mut fams = Families::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let e = fams
            .entry(f[0].to_string())
            .or_insert_with(|| (f[1].to_string(), Vec::new()));
        assert_eq!(e.0, f[1], "one type per family");
        e.1.push((f[2].to_string(), f[3].to_string(), f[4].parse().unwrap()));
    }
    Some(fams)
}

fn value(fams: &Families, family: &str, kind: &str, sample: &str, labels: &str) -> f64 {
    let (t, samples) = fams
        .get(family)
        .unwrap_or_else(|| panic!("no family {family} in {fams:?}"));
    assert_eq!(t, kind, "type of {family}");
    samples
        .iter()
        .find(|(n, l, _)| n == sample && l == labels)
        .unwrap_or_else(|| panic!("no {sample}{{{labels}}} in {samples:?}"))
        .2
}

#[test]
fn metrics_file_parses_with_prometheus_client_and_matches_the_logs() {
    let Some(_) = require("openssl", "openssl") else {
        return;
    };
    let dir = tempdir();
    let home = dir.path();
    write_log(
        home,
        "smtpd",
        &[
            "event=connect ip=192.0.2.1",
            "event=accept ip=192.0.2.1 helo=a.test from=<alice@a.test> rcpts=1 size=1000 tls=no auth=- qp=11",
            "event=accept ip=192.0.2.2 helo=b.test from=<bob@b.test> rcpts=2 size=2000 tls=yes auth=- qp=12",
            "event=reject ip=203.0.113.5 reason=relay helo=x from=<s@spam.test> rcpt=<v@victim.test>",
            "event=reject ip=203.0.113.5 reason=relay helo=x from=<s@spam.test> rcpt=<w@victim.test>",
            "event=reject ip=203.0.113.6 reason=unknownuser from=<s@spam.test> rcpt=<nobody@a.test>",
            "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=virus rule=clamd:/s:Eicar detail=Eicar copy=quarantine/new/1",
            "event=reject ip=192.0.2.10 reason=queue code=31 detail=\"refused\"",
            "event=authfail ip=198.51.100.2 user=alice@a.test reason=badpass delay=0",
            "event=reject ip=198.51.100.2 reason=authfail user=alice@a.test mech=PLAIN",
            "event=reject ip=198.51.100.4 reason=ratelimit from=<spam@a.test>",
            "event=reject ip=192.0.2.11 reason=hops hops=101",
            "event=greylist ip=192.0.2.20 from=<g@g.test> rcpt=<alice@a.test> result=defer wait=300",
            "event=pregreet ip=203.0.113.9 result=drop why=talked-first after=1ms text=EHLO",
            "not a log line",
        ],
    );
    write_log(
        home,
        "send",
        &[
            "event=new id=1 from=<alice@a.test> rcpts=1 local=0 remote=1 size=1000 priority=1",
            "event=delivery id=1 rcpt=<x@far.test> kind=remote result=ok tries=1 text=\"250 ok\"",
            "event=delivery id=2 rcpt=<y@far.test> kind=remote result=defer tries=1 text=\"421 busy\"",
            "event=delivery id=2 rcpt=<y@far.test> kind=remote result=fail tries=2 text=\"550 no\"",
            "event=delivery id=3 rcpt=<a@a.test> kind=local result=ok tries=1 text=ok",
            "event=delivery id=4 rcpt=<b@a.test> kind=local result=ok tries=1 text=ok",
            "event=delivery id=5 rcpt=<c@a.test> kind=local result=defer tries=1 text=quota",
            "event=bounce id=2 rcpts=1",
        ],
    );
    // Dovecot's logins go through postern-checkpassword too (docs/dovecot.md).
    write_log(
        home,
        "pop3d",
        &[
            "event=authfail ip=198.51.100.3 user=bob@b.test reason=nouser delay=0",
            "event=loginfail ip=198.51.100.3 tls=yes reason=auth user=bob@b.test mech=USER failures=1",
            "event=authfail ip=198.51.100.7 user=carol@a.test reason=badpass delay=0",
        ],
    );
    write_log(
        home,
        "ratelimit",
        &["event=ratelimit kind=sender key=alice@a.test count=90 rcpts=90 window=3600 action=block until=1700020000"],
    );
    // The queue: three messages, the oldest an hour old; the quarantine: two.
    for (sub, n) in [("new", 1), ("mess", 2)] {
        let d = home.join("queue").join(sub);
        fs::create_dir_all(&d).unwrap();
        for k in 0..n {
            fs::write(d.join(k.to_string()), "x").unwrap();
        }
    }
    let old = fs::File::options()
        .write(true)
        .open(home.join("queue/mess/0"))
        .unwrap();
    old.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    for (sub, name) in [
        ("new", "1700000000.M1P1.x"),
        ("cur", "1700000001.M1P1.x:2,"),
    ] {
        let d = home.join("quarantine").join(sub);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(name), "x").unwrap();
    }
    // A certificate valid for 30 days.
    let tls = home.join("control/tls");
    fs::create_dir_all(&tls).unwrap();
    let (code, _, err) = run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
            .args(["-subj", "/CN=example.test", "-keyout"])
            .arg(tls.join("key.pem"))
            .arg("-out")
            .arg(tls.join("cert.pem")),
        RUN,
    );
    assert_eq!(code, Some(0), "openssl: {err}");

    let out_dir = home.join("textfile");
    fs::create_dir(&out_dir).unwrap();
    let file = out_dir.join("postern.prom");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_posternctl"));
    cmd.env_remove("POSTERN_HOME")
        .args(["report", "--home"])
        .arg(home)
        .arg("--metrics")
        .arg(&file);
    let (code, out, err) = run(&mut cmd, RUN);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "", "--metrics prints nothing (cron mails nothing)");
    let names: Vec<String> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["postern.prom"], "no temporary file left behind");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);

    let Some(fams) = parse(&file) else {
        return;
    };
    let v = |family: &str, kind: &str, sample: &str, labels: &str| {
        value(&fams, family, kind, sample, labels)
    };
    // Counters: the parser names the family without `_total`, the samples with it.
    let c = |name: &str, labels: &str| v(name, "counter", &format!("{name}_total"), labels);
    assert_eq!(c("postern_messages_accepted", ""), 2.0);
    assert_eq!(c("postern_messages_accepted_bytes", ""), 3000.0);
    for (reason, n) in [
        ("relay", 2.0),
        ("unknown_user", 1.0),
        ("rbl", 0.0),
        ("bad_sender", 0.0),
        ("virus", 1.0),
        ("spam", 0.0),
        ("content_rule", 0.0),
        ("mime", 0.0),
        ("rate_limit", 2.0),
        ("auth_failure", 3.0),
        ("auth_required", 0.0),
        ("access_rule", 0.0),
        ("pregreet", 1.0),
        ("other", 1.0),
    ] {
        assert_eq!(
            c("postern_refused", &format!("reason={reason}")),
            n,
            "{reason}"
        );
    }
    for (channel, result, n) in [
        ("local", "delivered", 2.0),
        ("local", "deferred", 1.0),
        ("local", "bounced", 0.0),
        ("remote", "delivered", 1.0),
        ("remote", "deferred", 1.0),
        ("remote", "bounced", 1.0),
    ] {
        assert_eq!(
            c(
                "postern_deliveries",
                &format!("channel={channel},result={result}")
            ),
            n,
            "{channel} {result}"
        );
    }
    // smtpd's checker+front-end pair once, pop3d's pair once, a lone checker line once.
    assert_eq!(c("postern_auth_failures", ""), 3.0);
    assert_eq!(c("postern_ratelimit_blocks", ""), 2.0);
    assert_eq!(c("postern_log_lines", "kind=other"), 1.0);
    assert_eq!(c("postern_log_lines", "kind=known"), 26.0);
    assert_eq!(c("postern_greylist", "result=defer"), 1.0);
    assert_eq!(c("postern_greylist", "result=retried"), 0.0);
    let g = |name: &str| v(name, "gauge", name, "");
    assert_eq!(g("postern_queue_messages"), 3.0);
    let age = g("postern_queue_oldest_age_seconds");
    assert!((3600.0..3700.0).contains(&age), "{age}");
    assert_eq!(g("postern_quarantine_messages"), 2.0);
    let days = g("postern_tls_certificate_days_left");
    assert!(days == 29.0 || days == 30.0, "{days}");
    assert_eq!(
        g("postern_log_last_line_timestamp_seconds"),
        (T0 + 14) as f64
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!((now - g("postern_metrics_timestamp_seconds")).abs() < 120.0);
    // Nothing the parser did not find a declared family for (an untyped stray sample
    // would show up as a family of type "unknown").
    assert!(
        fams.values().all(|(t, _)| t == "counter" || t == "gauge"),
        "{fams:?}"
    );
    assert_eq!(fams.len(), 14, "{:?}", fams.keys().collect::<Vec<_>>());

    // Refusing --metrics with a window: counters cover every log.
    let mut bad = Command::new(env!("CARGO_BIN_EXE_posternctl"));
    bad.env_remove("POSTERN_HOME")
        .args(["report", "--home"])
        .arg(home)
        .args(["--since", "1d", "--metrics"])
        .arg(&file);
    let (code, _, err) = run(&mut bad, RUN);
    assert_eq!(code, Some(100), "{err}");
}
