//! The three-host test (issue 14 item 6): postern as the mail gateway of an
//! organisation, between the internet and a real internal Postfix, each host in a
//! network namespace this test makes (unique names per run, removed afterwards — also
//! on failure — with whatever still runs in them; traffic stays inside them):
//!
//! ```text
//!  internet 10.77.0.0/24           gateway                     lan 10.77.1.0/24
//!  .10 client (smtplib)    ─veth─  .2  postern  .1  ─veth─   .25 Postfix mail.corp.test
//!  .53 dnsmasq (MX/A/TXT)          (scripts/install,            (alice, bob, postmaster:
//!  .25 smtp-sink, the MX of         svscan, clamd)               Maildirs, TLS by a test CA)
//!      outside.test                                          .10 workstation (smtplib)
//! ```
//!
//! The gateway is a system install (`scripts/install --bin target/debug` into a
//! temporary home, accounts with a unique prefix, removed afterwards) run by its own
//! postern-svscan, with postern-scan + clamd (one test signature: EICAR),
//! `rcpthosts` + `relayrecipients` for corp.test, `smtproutes` sending corp.test to
//! mail.corp.test with `tls=verify ca=corp-ca.pem`, `resolvers` pointing at the
//! dnsmasq, and `tcp.smtp` giving RELAYCLIENT to the LAN.
//!
//! Flows, each asserted: inbound mail found by MX, scanned, routed over verified TLS into
//! alice's Maildir on Postfix; `nosuch@corp.test` refused at RCPT, nothing queued, no
//! bounce anywhere; EICAR inbound and from the LAN refused with 554 (postmaster gets
//! the alerts, through the same route); LAN mail out by MX lookup to the outside MX;
//! the internal server down: queued at the gateway, delivered after it returns (retry
//! forced with `posternctl doqueue`); the internal server showing a certificate the CA
//! did not sign, or no STARTTLS at all: nothing sent, the message waits, then goes
//! once the right certificate is back; an internet client relaying to an outside
//! domain: 553.
//!
//! Needs root and iproute2 (and Debian's postfix, dnsmasq, clamav-daemon, openssl,
//! python3): `#[ignore]`d, and run by `scripts/test` as root with
//! `cargo test --test scenarios -- --ignored gateway`. Run without root or `ip`, it
//! fails saying so (it is never counted as passed without having run).

use postern_testkit::{find_program, process_alive, run, target_dir, tempdir, wait_until, Daemon};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The bound of every wait for something that should happen.
const T: Duration = Duration::from_secs(60);

const INET_CLIENT: &str = "10.77.0.10";
const DNS: &str = "10.77.0.53";
const OUTSIDE_MX: &str = "10.77.0.25";
const GW_OUTSIDE: &str = "10.77.0.2";
const GW_INSIDE: &str = "10.77.1.1";
const MAIL: &str = "10.77.1.25";
const WORKSTATION: &str = "10.77.1.10";

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const ROLES: &[&str] = &["net", "queue", "send", "remote", "mail", "log", "ratelimit"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A third-party program this test cannot do without: its path, or a failure that says
/// what to install (never a silent skip: the test is only run on purpose).
fn need(program: &str, package: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| {
        panic!("the three-host test needs {program} (Debian package {package}): run scripts/test as root, which installs it")
    })
}

/// Run `cmd` to completion; it must exit 0. Returns its stdout.
fn sh(what: &str, cmd: &mut Command) -> String {
    let (code, out, err) = run(cmd, T);
    assert_eq!(code, Some(0), "{what}: {err}{out}");
    out
}

fn ip(args: &[&str]) {
    sh(
        &format!("ip {}", args.join(" ")),
        Command::new("ip").args(args),
    );
}

/// `program` run inside the network namespace `ns`.
fn in_ns(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Whether something in `ns` accepts TCP connections on `addr:port`.
fn port_open(ns: &str, addr: &str, port: u16) -> bool {
    Command::new("timeout")
        .args(["5", "ip", "netns", "exec", ns, "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The processes in network namespace `ns`.
fn pids_in(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The test's network namespaces. Dropped (pass or fail) after the guards of what runs
/// in them: whatever is left inside is ended by pid, then each namespace is deleted,
/// which takes its veths and addresses with it.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn make(names: &[&str]) -> Namespaces {
        let mut made = Namespaces { names: Vec::new() };
        for name in names {
            ip(&["netns", "add", name]);
            made.names.push(name.to_string());
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        made
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        for ns in &self.names {
            for signal in [Signal::SIGTERM, Signal::SIGKILL] {
                let pids = pids_in(ns);
                if pids.is_empty() {
                    break;
                }
                eprintln!("gateway: ending {pids:?} left in {ns} with {signal}");
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid), signal);
                }
                wait_until(Duration::from_secs(5), || pids_in(ns).is_empty());
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A veth pair between two namespaces, an address on each end, both up.
fn veth(a: (&str, &str, &str), b: (&str, &str, &str)) {
    let ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)) = (a, b);
    ip(&[
        "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b,
    ]);
    for (ns, dev, addr) in [(ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
}

/// The gateway's system install: scripts/uninstall and the accounts removed when the
/// test ends, pass or fail (as tests/scenarios/install.rs does).
struct Installed {
    home: PathBuf,
    prefix: String,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.home.join("control").is_dir() {
            let _ = Command::new(repo().join("scripts/uninstall"))
                .arg("--home")
                .arg(&self.home)
                .output();
        }
        for role in ROLES {
            let name = format!("{}-{role}", self.prefix);
            let _ = Command::new("userdel").arg(&name).output();
            let _ = Command::new("groupdel").arg(&name).output();
        }
    }
}

/// The internal server: a private Postfix instance (its own config, queue and data
/// directories) in the lan namespace. Stopped when dropped.
struct Postfix {
    ns: String,
    dir: PathBuf,
    running: bool,
}

/// Which certificate Postfix shows, and whether it offers STARTTLS at all.
#[derive(Clone, Copy)]
enum Tls {
    Signed,
    Rogue,
    Off,
}

impl Postfix {
    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }

    fn configure(&self, tls: Tls) {
        let pf = self.dir.display();
        let nobody = postern_common::privilege::lookup_account("nobody").expect("nobody");
        let (cert, level) = match tls {
            Tls::Signed => ("signed", "may"),
            Tls::Rogue => ("rogue", "may"),
            Tls::Off => ("signed", "none"),
        };
        let main = format!(
            "# The internal server of tests/scenarios/gateway.rs.
compatibility_level = 3.6
queue_directory = {pf}/queue
data_directory = {pf}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.corp.test
mydomain = corp.test
myorigin = corp.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = {GW_INSIDE}/32
inet_interfaces = {MAIL}
inet_protocols = ipv4
relayhost =
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
virtual_mailbox_domains = corp.test
virtual_mailbox_base = {pf}/mail
virtual_mailbox_maps = texthash:{pf}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_tls_security_level = {level}
smtpd_tls_cert_file = {pf}/etc/{cert}-cert.pem
smtpd_tls_key_file = {pf}/etc/{cert}-key.pem
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
maillog_file = {pf}/maillog
maillog_file_prefixes = {pf}
biff = no
smtputf8_enable = no
",
            uid = nobody.uid,
            gid = nobody.gid,
        );
        fs::write(self.etc().join("main.cf"), main).unwrap();
    }

    fn postfix(&self, action: &str) {
        let (code, out, err) = run(
            in_ns(&self.ns, "postfix")
                .arg("-c")
                .arg(self.etc())
                .arg(action),
            T,
        );
        assert_eq!(
            code,
            Some(0),
            "postfix {action}: {err}{out}\n{}",
            tail(&self.dir.join("maillog"), 30)
        );
    }

    fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    fn start(&mut self, tls: Tls) {
        self.configure(tls);
        self.postfix("start");
        self.running = true;
        assert!(
            wait_until(T, || port_open(&self.ns, MAIL, 25)),
            "Postfix did not listen on {MAIL}:25 within {T:?}:\n{}",
            tail(&self.dir.join("maillog"), 30)
        );
    }

    fn stop(&mut self) {
        let master = self.master_pid();
        self.postfix("stop");
        self.running = false;
        assert!(
            wait_until(T, || {
                master.is_none_or(|pid| !process_alive(pid)) && !port_open(&self.ns, MAIL, 25)
            }),
            "Postfix did not stop within {T:?}"
        );
    }

    /// Messages in Postfix's queue (accepted and not yet delivered).
    fn queued(&self) -> usize {
        ["maildrop", "incoming", "active", "deferred", "hold"]
            .iter()
            .map(|d| files_under(&self.dir.join("queue").join(d)).len())
            .sum()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if self.running {
            let _ = Command::new("timeout")
                .args(["30", "ip", "netns", "exec", &self.ns, "postfix", "-c"])
                .arg(self.etc())
                .arg("stop")
                .output();
        }
    }
}

/// Every regular file below `dir` (none if it cannot be read).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            out.extend(files_under(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

/// The last `n` lines of a file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    format!("--- {} ---\n{}\n", path.display(), lines[from..].join("\n"))
}

/// The test CA, the internal server's certificate signed by it (for mail.corp.test),
/// and a rogue one for the same name signed by another CA: `DIR/{ca.pem, signed-*.pem,
/// rogue-*.pem}`.
fn certificates(dir: &Path) {
    need("openssl", "openssl");
    fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = postern gateway test CA\n\
         [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    fs::write(
        dir.join("server.cnf"),
        "[server]\nsubjectAltName = DNS:mail.corp.test\nbasicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        sh(
            &format!("openssl {}", args.join(" ")),
            Command::new("openssl").current_dir(dir).args(args),
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (ca, subject) in [
        ("ca", "/CN=postern gateway test CA"),
        ("rogue-ca", "/CN=rogue CA"),
    ] {
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        let mut args = vec!["req", "-x509", "-config", "ca.cnf", "-extensions", "ca"];
        args.extend(ec);
        args.extend([
            "-days", "2", "-subj", subject, "-keyout", &key, "-out", &pem,
        ]);
        openssl(&args);
    }
    for (name, ca) in [("signed", "ca"), ("rogue", "rogue-ca")] {
        let (key, csr, cert) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}-cert.pem"),
        );
        let mut args = vec!["req", "-new"];
        args.extend(ec);
        args.extend(["-subj", "/CN=mail.corp.test", "-keyout", &key, "-out", &csr]);
        openssl(&args);
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.cnf",
            "-extensions",
            "server",
            "-out",
            &cert,
        ]);
        fs::set_permissions(dir.join(&key), fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Where a client sends.
enum To<'a> {
    /// This address, port 25.
    Addr(&'a str),
    /// The best MX of this domain, looked up in the test's DNS.
    Mx(&'a str),
}

/// What each step of one SMTP transaction answered (gateway_client.py's lines).
struct Session {
    out: String,
}

impl Session {
    /// The reply line of `step` (`mail`, `data`, `rcpt ADDR`, …): code and text.
    fn reply(&self, step: &str) -> Option<(u16, String)> {
        self.out.lines().find_map(|l| {
            let rest = l.strip_prefix(step)?.strip_prefix(' ')?;
            let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((code.parse().ok()?, text.to_string()))
        })
    }

    fn code(&self, step: &str) -> Option<u16> {
        self.reply(step).map(|r| r.0)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.out
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
    }
}

/// The paths and names of one run, and what the test asks of them.
struct World {
    lan: String,
    home: PathBuf,
    pf: PathBuf,
    sink: PathBuf,
    scratch: PathBuf,
}

impl World {
    fn client(&self) -> PathBuf {
        repo().join("tests/scenarios/gateway_client.py")
    }

    /// One SMTP transaction by a client in namespace `ns`, from `source`.
    fn smtp(
        &self,
        ns: &str,
        source: &str,
        to: To,
        from: &str,
        rcpts: &[&str],
        msg: &str,
    ) -> Session {
        let mut cmd = in_ns(ns, "python3");
        cmd.arg(self.client())
            .arg("send")
            .env("SMTP_SOURCE", source)
            .env("SMTP_FROM", from)
            .env("SMTP_RCPTS", rcpts.join(" "))
            .env("SMTP_MESSAGE", msg)
            .env(
                "SMTP_HELO",
                if ns == self.lan {
                    "ws.corp.test"
                } else {
                    "client.outside.test"
                },
            );
        match to {
            To::Addr(a) => cmd.env("SMTP_SERVER", a),
            To::Mx(d) => cmd.env("SMTP_MX", d).env("SMTP_DNS", DNS),
        };
        let (code, out, err) = run(&mut cmd, T);
        assert_eq!(
            code,
            Some(0),
            "smtplib: {err}\n{out}\n{}",
            self.diagnostics()
        );
        Session { out }
    }

    /// Answers of a DNS query made from namespace `ns` to the test's dnsmasq.
    fn dns(&self, ns: &str, name: &str, rtype: &str) -> Option<Vec<String>> {
        let (code, out, _) = run(
            in_ns(ns, "python3")
                .arg(self.client())
                .args(["dns", DNS, name, rtype]),
            T,
        );
        (code == Some(0)).then(|| out.lines().map(str::to_string).collect())
    }

    /// The messages in a Maildir of the internal server (`new/` and `cur/`).
    fn mailbox(&self, user: &str) -> Vec<String> {
        let dir = self.pf.join("mail/corp.test").join(user);
        let mut out: Vec<String> = ["new", "cur"]
            .iter()
            .flat_map(|d| files_under(&dir.join(d)))
            .map(|f| String::from_utf8_lossy(&fs::read(f).unwrap_or_default()).into_owned())
            .collect();
        out.sort();
        out
    }

    /// The messages smtp-sink (the outside MX) received.
    fn sink_dumps(&self) -> Vec<String> {
        let mut out: Vec<String> = files_under(&self.sink)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("msg-"))
            })
            .map(|p| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned())
            .collect();
        out.sort();
        out
    }

    /// Messages in the gateway's queue.
    fn gateway_queue(&self) -> usize {
        ["new", "mess"]
            .iter()
            .map(|d| files_under(&self.home.join("queue").join(d)).len())
            .sum()
    }

    /// The current log of one of the gateway's services.
    fn log(&self, service: &str) -> String {
        fs::read_to_string(self.home.join("log").join(service).join("current")).unwrap_or_default()
    }

    /// postern-send's delivery lines for `rcpt` with `result`.
    fn deliveries(&self, rcpt: &str, result: &str) -> Vec<String> {
        let (r, res) = (format!("rcpt=<{rcpt}>"), format!("result={result} "));
        self.log("send")
            .lines()
            .filter(|l| l.contains("event=delivery ") && l.contains(&r) && l.contains(&res))
            .map(str::to_string)
            .collect()
    }

    fn posternctl(&self, args: &[&str]) -> String {
        sh(
            &format!("posternctl {}", args.join(" ")),
            Command::new(self.home.join("bin/posternctl"))
                .arg("--home")
                .arg(&self.home)
                .args(args),
        )
    }

    /// Everything worth reading when a step fails.
    fn diagnostics(&self) -> String {
        [
            self.home.join("log/smtpd/current"),
            self.home.join("log/send/current"),
            self.pf.join("maillog"),
            self.scratch.join("dnsmasq.log"),
            self.scratch.join("clamd/clamd.log"),
        ]
        .iter()
        .map(|p| tail(p, 25))
        .collect()
    }

    /// Wait (at most T) for `cond`; fail with the logs when it does not come.
    fn within(&self, what: &str, cond: impl FnMut() -> bool) {
        if !wait_until(T, cond) {
            panic!(
                "timed out after {T:?} waiting for {what}\n{}",
                self.diagnostics()
            );
        }
    }
}

fn message(from: &str, to: &str, subject: &str, id: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\r\n{body}\r\n"
    )
}

/// A message with EICAR as a base64 attachment named `eicar.txt` (no attachment rule
/// refuses that name: only clamd's signature can).
fn eicar_message(from: &str, to: &str) -> String {
    let b64 = sh(
        "base64",
        Command::new("sh")
            .args(["-c", "printf '%s' \"$1\" | base64 -w0", "sh"])
            .arg(EICAR),
    );
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n\
         see attached\r\n--XX\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"eicar.txt\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
        b64.trim()
    )
}

#[test]
#[ignore = "needs root and iproute2: run by scripts/test as root"]
fn gateway_between_the_internet_and_an_internal_postfix() {
    let started = Instant::now();
    assert!(
        postern_common::privilege::is_root(),
        "the three-host test needs root (network namespaces, accounts, a system install): \
         it is run by scripts/test as root"
    );
    need("ip", "iproute2");
    for (program, package) in [
        ("postfix", "postfix"),
        ("smtp-sink", "postfix"),
        ("dnsmasq", "dnsmasq"),
        ("clamd", "clamav-daemon"),
        ("python3", "python3"),
        ("base64", "coreutils"),
        ("timeout", "coreutils"),
    ] {
        need(program, package);
    }

    // Unique names per run: namespaces, veths (at most 15 bytes), accounts.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let id = format!("{}{:02}", std::process::id() % 100_000, nanos % 100);
    let (inet, gw, lan) = (
        format!("pgw{id}-inet"),
        format!("pgw{id}-gw"),
        format!("pgw{id}-lan"),
    );
    let prefix = format!("pgw{id}");

    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = dir.path().to_path_buf();
    let w = World {
        lan: lan.clone(),
        home: scratch.join("gateway"),
        pf: scratch.join("postfix"),
        sink: scratch.join("sink"),
        scratch: scratch.clone(),
    };

    // --- The three hosts and their wires. --------------------------------------------
    let _namespaces = Namespaces::make(&[&inet, &gw, &lan]);
    veth(
        (&gw, &format!("gi{id}"), &format!("{GW_OUTSIDE}/24")),
        (&inet, &format!("ig{id}"), &format!("{INET_CLIENT}/24")),
    );
    for addr in [DNS, OUTSIDE_MX] {
        ip(&[
            "-n",
            &inet,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &format!("ig{id}"),
        ]);
    }
    veth(
        (&gw, &format!("gl{id}"), &format!("{GW_INSIDE}/24")),
        (&lan, &format!("lg{id}"), &format!("{MAIL}/24")),
    );
    ip(&[
        "-n",
        &lan,
        "addr",
        "add",
        &format!("{WORKSTATION}/24"),
        "dev",
        &format!("lg{id}"),
    ]);

    // --- internet: DNS for the test domains, and the outside MX. ------------------------
    let mut cmd = in_ns(&inet, need("dnsmasq", "dnsmasq"));
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
    ])
    .args([
        "--bind-interfaces",
        "--port=53",
        "--pid-file=",
        "--user=root",
        "--log-queries",
    ])
    .arg(format!("--listen-address={DNS}"))
    .arg(format!(
        "--log-facility={}",
        scratch.join("dnsmasq.log").display()
    ))
    .args(["--local=/test/", "--mx-host=corp.test,mx.corp.test,10"])
    .arg(format!("--host-record=mx.corp.test,{GW_OUTSIDE}"))
    .arg(format!("--host-record=mail.corp.test,{MAIL}"))
    .args(["--mx-host=outside.test,mx.outside.test,10"])
    .arg(format!("--host-record=mx.outside.test,{OUTSIDE_MX}"))
    .arg("--txt-record=corp.test,v=spf1 mx -all")
    .arg("--txt-record=outside.test,v=spf1 ip4:10.77.0.0/24 -all");
    let _dnsmasq = Daemon::spawn_quiet("dnsmasq", cmd);
    let mut answer = None;
    w.within("dnsmasq to answer in the internet namespace", || {
        answer = w.dns(&inet, "corp.test", "MX");
        answer.is_some()
    });
    assert_eq!(answer.unwrap(), vec!["10 mx.corp.test"]);
    assert_eq!(
        w.dns(&inet, "outside.test", "TXT").unwrap(),
        vec!["v=spf1 ip4:10.77.0.0/24 -all"]
    );
    assert_eq!(
        w.dns(&gw, "mail.corp.test", "A").unwrap(),
        vec![MAIL],
        "the gateway reaches the DNS over its outside wire"
    );

    fs::create_dir(&w.sink).unwrap();
    fs::set_permissions(&w.sink, fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = in_ns(&inet, need("smtp-sink", "postfix"));
    cmd.current_dir(&w.sink)
        .args(["-u", "nobody", "-d"])
        .arg(w.sink.join("msg-%H%M%S."))
        .arg(format!("{OUTSIDE_MX}:25"))
        .arg("10");
    let _sink = Daemon::spawn_quiet("smtp-sink", cmd);
    w.within("the outside MX to listen", || {
        port_open(&inet, OUTSIDE_MX, 25)
    });

    // --- lan: the internal Postfix, with a certificate from the test CA. ----------------
    let certs = scratch.join("certs");
    fs::create_dir(&certs).unwrap();
    certificates(&certs);
    for d in ["etc", "queue", "data", "mail"] {
        fs::create_dir_all(w.pf.join(d)).unwrap();
    }
    sh(
        "chown postfix data",
        Command::new("chown").arg("postfix:").arg(w.pf.join("data")),
    );
    sh(
        "chown nobody mail",
        Command::new("chown").arg("nobody:").arg(w.pf.join("mail")),
    );
    for name in ["signed", "rogue"] {
        for part in ["cert", "key"] {
            let f = format!("{name}-{part}.pem");
            fs::copy(certs.join(&f), w.pf.join("etc").join(&f)).unwrap();
        }
    }
    fs::write(
        w.pf.join("etc/vmailbox"),
        "alice@corp.test corp.test/alice/\nbob@corp.test corp.test/bob/\n\
         postmaster@corp.test corp.test/postmaster/\n",
    )
    .unwrap();
    fs::write(
        w.pf.join("etc/master.cf"),
        format!(
            "# Postfix's stock services, chroot off; smtpd on the lan address only.
{MAIL}:25 inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
        ),
    )
    .unwrap();
    let mut postfix = Postfix {
        ns: lan.clone(),
        dir: w.pf.clone(),
        running: false,
    };
    postfix.configure(Tls::Signed);
    postfix.postfix("check");
    postfix.start(Tls::Signed);

    // --- gateway: the system install, clamd, the control files, svscan. -----------------
    let _installed = Installed {
        home: w.home.clone(),
        prefix: prefix.clone(),
    };
    sh(
        "scripts/install",
        Command::new(repo().join("scripts/install"))
            .arg("--home")
            .arg(&w.home)
            .args(["--prefix-accounts", &prefix, "--bin"])
            .arg(target_dir())
            .args(["--domain", "corp.test", "--listen", "0"])
            .args([
                "--smtp-port",
                "25",
                "--submission-port",
                "587",
                "--pop3-port",
                "110",
            ]),
    );

    let clam = scratch.join("clamd");
    fs::create_dir_all(clam.join("db")).unwrap();
    let hex: String = EICAR.bytes().map(|b| format!("{b:02x}")).collect();
    fs::write(
        clam.join("db/postern-test.ndb"),
        format!("Postern-Test-EICAR:0:*:{hex}\n"),
    )
    .unwrap();
    let socket = clam.join("clamd.sock");
    fs::write(
        clam.join("clamd.conf"),
        format!(
            "LocalSocket {}\nDatabaseDirectory {}\nForeground yes\nLogFile {}\nScanMail yes\n",
            socket.display(),
            clam.join("db").display(),
            clam.join("clamd.log").display()
        ),
    )
    .unwrap();
    let mut cmd = in_ns(&gw, need("clamd", "clamav-daemon"));
    cmd.arg("-c").arg(clam.join("clamd.conf"));
    let _clamd = Daemon::spawn_quiet("clamd", cmd);
    w.within("clamd to listen", || socket.exists());

    let control = w.home.join("control");
    fs::copy(certs.join("ca.pem"), control.join("corp-ca.pem")).unwrap();
    let files = [
        ("me", "gw.corp.test\n".to_string()),
        ("rcpthosts", "corp.test\n".to_string()),
        (
            "relayrecipients",
            "alice@corp.test\nbob@corp.test\npostmaster@corp.test\n".to_string(),
        ),
        (
            "smtproutes",
            "corp.test:mail.corp.test:25 tls=verify ca=corp-ca.pem\n".to_string(),
        ),
        ("resolvers", format!("{DNS}\n")),
        ("scanners", format!("clamd:{}\n", socket.display())),
        ("scanheader", "1\n".to_string()),
        ("alertto", "postmaster@corp.test\n".to_string()),
        (
            "tcp.smtp",
            "10.77.1.:allow,RELAYCLIENT=\"\"\n:allow\n".to_string(),
        ),
    ];
    for (name, text) in files {
        fs::write(control.join(name), text).unwrap();
    }
    // Alerts come from postern-ratelimit's digest: the first at once, the next after
    // alertinterval — two seconds here, so flow 5's second alert does not wait five
    // minutes.
    let mut ratelimit = fs::read_to_string(control.join("ratelimit")).unwrap_or_default();
    ratelimit.push_str("alertinterval 2\n");
    fs::write(control.join("ratelimit"), ratelimit).unwrap();
    let out = w.posternctl(&["cdb"]);
    assert!(out.contains("relayrecipients"), "{out}");
    let (code, out, err) = run(
        Command::new(w.home.join("bin/posternctl"))
            .arg("--home")
            .arg(&w.home)
            .arg("check"),
        T,
    );
    assert_eq!(code, Some(0), "posternctl check: {err}{out}");
    assert!(
        !format!("{out}{err}").contains("corp.test"),
        "no warning about corp.test: {out}{err}"
    );

    let mut cmd = in_ns(&gw, w.home.join("bin/postern-svscan"));
    cmd.arg(w.home.join("service"));
    let _svscan = Daemon::spawn_quiet("postern-svscan", cmd);
    w.within("the gateway to listen outside", || {
        port_open(&inet, GW_OUTSIDE, 25)
    });
    w.within("the gateway to listen inside", || {
        port_open(&lan, GW_INSIDE, 25)
    });
    eprintln!("gateway: set up in {:?}", started.elapsed());

    // --- 1. Inbound, found by MX: scanned, routed over verified TLS, in alice's Maildir.
    let s = w.smtp(
        &inet,
        INET_CLIENT,
        To::Mx("corp.test"),
        "friend@outside.test",
        &["alice@corp.test"],
        &message(
            "friend@outside.test",
            "alice@corp.test",
            "gateway inbound",
            "in-1@outside.test",
            "Through the gateway.",
        ),
    );
    assert_eq!(s.value("mx"), Some("mx.corp.test"), "{}", s.out);
    assert_eq!(s.value("server"), Some(GW_OUTSIDE), "{}", s.out);
    assert_eq!(s.code("data"), Some(250), "{}", s.out);
    w.within("the message in alice's Maildir on Postfix", || {
        w.mailbox("alice").len() == 1
    });
    let mail = &w.mailbox("alice")[0];
    assert!(mail.contains("Message-ID: <in-1@outside.test>"), "{mail}");
    assert!(
        mail.contains("X-Postern-Scanned: clean; engines=clamd:"),
        "scanned by clamd at the gateway: {mail}"
    );
    assert!(mail.contains(INET_CLIENT), "the gateway's Received: {mail}");
    // SPF, DKIM and DMARC are on by default: outside.test's SPF covers the client.
    assert!(
        mail.contains("Authentication-Results: gw.corp.test;") && mail.contains("spf=pass"),
        "checked at the gateway: {mail}"
    );
    assert!(
        mail.contains(&format!("[{GW_INSIDE}])")) && mail.contains("(using TLS"),
        "Postfix received it from the gateway over TLS: {mail}"
    );
    let ok = w.deliveries("alice@corp.test", "ok");
    assert!(
        ok.iter()
            .any(|l| l.contains(&format!("mail.corp.test ({MAIL}) accepted message"))),
        "{ok:?}"
    );
    eprintln!("gateway: flow 1 (inbound, MX, scan, verified TLS route) passed");

    // --- 2. A recipient that does not exist: 550 at RCPT, nothing queued (checked with
    //        the absence of bounces at the end).
    let queued_before = w.gateway_queue();
    let s = w.smtp(
        &inet,
        INET_CLIENT,
        To::Addr(GW_OUTSIDE),
        "probe@outside.test",
        &["nosuch@corp.test"],
        &message(
            "probe@outside.test",
            "nosuch@corp.test",
            "x",
            "p-1@outside.test",
            "x",
        ),
    );
    let (code, text) = s.reply("rcpt nosuch@corp.test").unwrap_or_default();
    assert_eq!(code, 550, "{}", s.out);
    assert!(text.contains("5.1.1"), "{text}");
    assert_eq!(s.reply("data"), None, "no DATA without a recipient");
    assert_eq!(w.gateway_queue(), queued_before, "nothing queued");
    eprintln!("gateway: flow 2 (nosuch@ refused at RCPT by relayrecipients) passed");

    // --- 2b. An outsider writing as our postmaster: corp.test's SPF (`mx -all`) does
    //         not cover the client and nothing carries corp.test's signature: 550 5.7.1
    //         before any 250 (the checks are on by default), nothing queued.
    let s = w.smtp(
        &inet,
        INET_CLIENT,
        To::Addr(GW_OUTSIDE),
        "postmaster@corp.test",
        &["alice@corp.test"],
        &message(
            "Postmaster <postmaster@corp.test>",
            "alice@corp.test",
            "verify your account",
            "forged-1@outside.test",
            "click",
        ),
    );
    assert_eq!(s.code("rcpt alice@corp.test"), Some(250), "{}", s.out);
    let (code, text) = s.reply("data").unwrap_or_default();
    assert_eq!(code, 550, "{}", s.out);
    assert!(
        text.starts_with("5.7.1 corp.test is a domain of this host"),
        "{text}"
    );
    assert_eq!(w.gateway_queue(), queued_before, "nothing queued");
    eprintln!("gateway: flow 2b (forged postmaster@corp.test from outside: 550) passed");

    // --- 3. EICAR from the internet: 554 at the gateway.
    let s = w.smtp(
        &inet,
        INET_CLIENT,
        To::Addr(GW_OUTSIDE),
        "mallory@outside.test",
        &["alice@corp.test"],
        &eicar_message("mallory@outside.test", "alice@corp.test"),
    );
    assert_eq!(s.code("rcpt alice@corp.test"), Some(250), "{}", s.out);
    let (code, text) = s.reply("data").unwrap_or_default();
    assert_eq!(code, 554, "{}", s.out);
    assert!(text.contains("Postern-Test-EICAR"), "{text}");
    eprintln!("gateway: flow 3 (EICAR inbound: 554) passed");

    // --- 4. From the LAN to the world: the outside MX found by MX lookup.
    let s = w.smtp(
        &lan,
        WORKSTATION,
        To::Addr(GW_INSIDE),
        "bob@corp.test",
        &["carol@outside.test"],
        &message(
            "bob@corp.test",
            "carol@outside.test",
            "from the LAN",
            "lan-1@corp.test",
            "Out through the gateway.",
        ),
    );
    assert_eq!(s.code("rcpt carol@outside.test"), Some(250), "{}", s.out);
    assert_eq!(s.code("data"), Some(250), "{}", s.out);
    w.within("the LAN's message at the outside MX", || {
        w.sink_dumps().len() == 1
    });
    let dump = &w.sink_dumps()[0];
    assert!(dump.contains("Message-ID: <lan-1@corp.test>"), "{dump}");
    assert!(dump.contains("X-Postern-Scanned: clean"), "{dump}");
    let ok = w.deliveries("carol@outside.test", "ok");
    assert!(
        ok.iter()
            .any(|l| l.contains(&format!("mx.outside.test ({OUTSIDE_MX})"))),
        "delivered to the MX found in DNS: {ok:?}"
    );
    eprintln!("gateway: flow 4 (LAN → MX lookup → outside MX) passed");

    // --- 5. EICAR from the LAN: 554 too.
    let s = w.smtp(
        &lan,
        WORKSTATION,
        To::Addr(GW_INSIDE),
        "bob@corp.test",
        &["carol@outside.test"],
        &eicar_message("bob@corp.test", "carol@outside.test"),
    );
    let (code, text) = s.reply("data").unwrap_or_default();
    assert_eq!(code, 554, "{}", s.out);
    assert!(text.contains("Postern-Test-EICAR"), "{text}");
    // Both refusals alerted postmaster, whose mail goes through the same route.
    w.within("two virus alerts in postmaster's Maildir", || {
        w.mailbox("postmaster").len() == 2
    });
    for alert in w.mailbox("postmaster") {
        assert!(alert.contains("Postern-Test-EICAR"), "{alert}");
    }
    eprintln!("gateway: flow 5 (EICAR from the LAN: 554; postmaster alerted) passed");

    // --- 6. The internal server down: queued at the gateway, delivered when it is back.
    postfix.stop();
    let s = w.smtp(
        &inet,
        INET_CLIENT,
        To::Addr(GW_OUTSIDE),
        "friend@outside.test",
        &["bob@corp.test"],
        &message(
            "friend@outside.test",
            "bob@corp.test",
            "while the server was down",
            "down-1@outside.test",
            "Waited at the gateway.",
        ),
    );
    assert_eq!(s.code("data"), Some(250), "{}", s.out);
    w.within("a deferred delivery to bob", || {
        !w.deliveries("bob@corp.test", "defer").is_empty()
    });
    assert_eq!(w.gateway_queue(), 1, "queued at the gateway");
    assert!(w.posternctl(&["queue"]).contains("bob@corp.test"));
    postfix.start(Tls::Signed);
    w.posternctl(&["doqueue"]);
    w.within("bob's message delivered after the server came back", || {
        w.mailbox("bob").len() == 1
    });
    assert!(w.mailbox("bob")[0].contains("Message-ID: <down-1@outside.test>"));
    w.within("the gateway's queue to empty", || w.gateway_queue() == 0);
    eprintln!("gateway: flow 6 (server down: queued, delivered after doqueue) passed");

    // --- 7. tls=verify: a certificate the CA did not sign, then no STARTTLS at all —
    //        nothing sent, the message waits; the right certificate back, it goes.
    postfix.stop();
    postfix.start(Tls::Rogue);
    let s = w.smtp(
        &inet,
        INET_CLIENT,
        To::Addr(GW_OUTSIDE),
        "friend@outside.test",
        &["alice@corp.test"],
        &message(
            "friend@outside.test",
            "alice@corp.test",
            "only over verified TLS",
            "tls-1@outside.test",
            "Never in the clear.",
        ),
    );
    assert_eq!(s.code("data"), Some(250), "{}", s.out);
    w.within("a defer: certificate not verified", || {
        w.deliveries("alice@corp.test", "defer")
            .iter()
            .any(|l| l.contains("not verified") && l.contains("UnknownIssuer"))
    });
    assert_eq!(
        w.mailbox("alice").len(),
        1,
        "nothing delivered to the rogue server"
    );
    assert_eq!(postfix.queued(), 0, "nothing accepted by the rogue server");
    postfix.stop();
    postfix.start(Tls::Off);
    w.posternctl(&["doqueue"]);
    w.within("a defer: no STARTTLS offered", || {
        w.deliveries("alice@corp.test", "defer")
            .iter()
            .any(|l| l.contains("did not offer STARTTLS"))
    });
    assert_eq!(
        w.mailbox("alice").len(),
        1,
        "nothing delivered in the clear"
    );
    assert_eq!(postfix.queued(), 0, "nothing accepted in the clear");
    assert_eq!(w.gateway_queue(), 1, "the message waits at the gateway");
    postfix.stop();
    postfix.start(Tls::Signed);
    w.posternctl(&["doqueue"]);
    w.within("the message delivered over verified TLS", || {
        w.mailbox("alice").len() == 2
    });
    let mail = w
        .mailbox("alice")
        .into_iter()
        .find(|m| m.contains("Message-ID: <tls-1@outside.test>"))
        .expect("the waiting message");
    assert!(mail.contains("(using TLS"), "{mail}");
    eprintln!(
        "gateway: flow 7 (tls=verify: rogue certificate, no STARTTLS, then the right one) passed"
    );

    // --- 8. An internet client relaying to an outside domain: 553.
    let s = w.smtp(
        &inet,
        INET_CLIENT,
        To::Addr(GW_OUTSIDE),
        "friend@outside.test",
        &["carol@outside.test"],
        &message(
            "friend@outside.test",
            "carol@outside.test",
            "relay?",
            "r-1@outside.test",
            "x",
        ),
    );
    assert_eq!(s.code("rcpt carol@outside.test"), Some(553), "{}", s.out);
    eprintln!("gateway: flow 8 (no relaying for the internet: 553) passed");

    // --- Nothing bounced anywhere, nothing left over.
    w.within("the gateway's queue to empty", || w.gateway_queue() == 0);
    let send_log = w.log("send");
    assert!(
        !send_log.contains("event=bounce"),
        "no bounce at the gateway:\n{send_log}"
    );
    assert!(
        !send_log.contains("from=<probe@outside.test>"),
        "the refused message was never queued:\n{send_log}"
    );
    assert_eq!(
        w.sink_dumps().len(),
        1,
        "the outside MX got the LAN's message and nothing else (no bounce to probe@ or mallory@)"
    );
    let maillog = fs::read_to_string(w.pf.join("maillog")).unwrap_or_default();
    assert!(
        !maillog.contains("status=bounced") && !maillog.contains("nosuch@"),
        "no bounce, no nosuch@ at the internal server:\n{maillog}"
    );
    assert_eq!(postfix.queued(), 0, "Postfix's queue is empty");
    assert_eq!(w.mailbox("alice").len(), 2);
    assert_eq!(w.mailbox("bob").len(), 1);
    for m in w.mailbox("alice").iter().chain(&w.mailbox("bob")) {
        assert!(!m.contains("EICAR"), "no virus delivered: {m}");
    }

    callout_flow(&w, &mut postfix, &inet);
    eprintln!("gateway: all flows passed in {:?}", started.elapsed());
}

/// Recipient verification by callout (`control/verifyrecipients`, postern-verify). It
/// runs after the other flows (alice holds 2 messages, bob 1) and checks:
///
/// - corp.test verified by callout instead of `relayrecipients`: `nosuch2@` → 550 5.1.1
///   carried back from Postfix ("User unknown in virtual mailbox table"), whose log
///   shows the probe (`from=<>`, a refused RCPT) and no message for it; `alice@` → 250 in
///   the same transaction and delivered; nothing queued for nosuch2, no bounce;
/// - Postfix stopped: alice, verified a moment ago, is accepted from the cache and
///   queued; bob, never probed, gets 450 4.4.3 (no `250` on doubt); Postfix back and
///   `posternctl doqueue`: alice's message delivered, the gateway's queue empty.
fn callout_flow(w: &World, postfix: &mut Postfix, inet: &str) {
    let control = w.home.join("control");
    fs::remove_file(control.join("relayrecipients")).unwrap();
    fs::write(control.join("verifyrecipients"), "corp.test\n").unwrap();
    w.posternctl(&["cdb"]);
    assert!(
        !control.join("relayrecipients.cdb").exists(),
        "relayrecipients no longer answers for corp.test"
    );
    let queued = w.gateway_queue();
    let s = w.smtp(
        inet,
        INET_CLIENT,
        To::Addr(GW_OUTSIDE),
        "probe2@outside.test",
        &["nosuch2@corp.test", "alice@corp.test"],
        &message(
            "probe2@outside.test",
            "alice@corp.test",
            "verified by callout",
            "callout-1@outside.test",
            "alice exists.",
        ),
    );
    let (code, text) = s.reply("rcpt nosuch2@corp.test").unwrap_or_default();
    assert_eq!(code, 550, "{}", s.out);
    assert!(text.contains("5.1.1"), "{text}");
    assert_eq!(s.code("rcpt alice@corp.test"), Some(250), "{}", s.out);
    assert_eq!(s.code("data"), Some(250), "{}", s.out);
    w.within("the verified message in alice's Maildir", || {
        w.mailbox("alice").len() == 3
    });
    let maillog = fs::read_to_string(w.pf.join("maillog")).unwrap_or_default();
    let probe = maillog
        .lines()
        .find(|l| l.contains("reject: RCPT") && l.contains("<nosuch2@corp.test>"))
        .unwrap_or_else(|| panic!("Postfix saw the callout's RCPT:\n{maillog}"));
    assert!(
        probe.contains("from=<>"),
        "a callout, MAIL FROM:<>: {probe}"
    );
    assert!(
        !maillog.contains("to=<nosuch2@corp.test>,"),
        "no message for nosuch2 at Postfix:\n{maillog}"
    );
    w.within("the gateway's queue to empty", || {
        w.gateway_queue() == queued
    });
    eprintln!("gateway: callout flow (nosuch2@ 550 from Postfix, alice@ 250) passed");

    postfix.stop();
    let s = w.smtp(
        inet,
        INET_CLIENT,
        To::Addr(GW_OUTSIDE),
        "friend@outside.test",
        &["alice@corp.test", "bob@corp.test"],
        &message(
            "friend@outside.test",
            "alice@corp.test",
            "verified from the cache",
            "callout-2@outside.test",
            "The server is down.",
        ),
    );
    assert_eq!(
        s.code("rcpt alice@corp.test"),
        Some(250),
        "cached: {}",
        s.out
    );
    let (code, text) = s.reply("rcpt bob@corp.test").unwrap_or_default();
    assert_eq!(code, 450, "never probed, server down: {}", s.out);
    assert!(text.contains("4.4.3"), "{text}");
    assert_eq!(s.code("data"), Some(250), "{}", s.out);
    w.within("a deferred delivery to alice", || {
        w.deliveries("alice@corp.test", "defer")
            .iter()
            .any(|l| l.contains("connection refused"))
    });
    postfix.start(Tls::Signed);
    w.posternctl(&["doqueue"]);
    w.within(
        "alice's message delivered after the server came back",
        || w.mailbox("alice").len() == 4,
    );
    assert_eq!(w.mailbox("bob").len(), 1, "nothing more for bob");
    w.within("the gateway's queue to empty", || w.gateway_queue() == 0);
    let send_log = w.log("send");
    assert!(!send_log.contains("event=bounce"), "no bounce:\n{send_log}");
    assert!(
        !send_log.contains("from=<probe2@outside.test> rcpts=2"),
        "{send_log}"
    );
    assert_eq!(w.sink_dumps().len(), 1, "no bounce to the outside");
    eprintln!("gateway: callout flow (server down: cached pass 250, unprobed 450) passed");
}
