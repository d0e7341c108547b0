//! What `posternctl init` puts into a new instance: the repository's `control/` defaults
//! and `service/` run-script templates, compiled into the binary so an install needs no
//! source tree. Adding a file to those directories means adding a line here.
//!
//! Templates may contain placeholders, filled in by [`render`] from [`Values`]:
//! `@POSTERN_HOME@`, `@DOMAIN@`, `@LISTEN@`, `@SMTPPORT@`, `@SUBMISSIONPORT@`,
//! `@POP3PORT@`, `@SUBMISSIONSPORT@`, `@POP3SPORT@`, `@NETACCOUNT@`, `@LOGRUNAS@`,
//! `@SENDRUNAS@` and `@RATELIMITRUNAS@`.
//! The account ones are empty in a single-user instance; in a root instance (made by
//! `scripts/install`, see docs/install.md) they name the service accounts.

/// A file `init` creates if it is missing.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Path relative to the instance.
    pub path: &'static str,
    pub contents: &'static str,
    pub mode: u32,
}

macro_rules! control {
    ($name:literal) => {
        Template {
            path: concat!("control/", $name),
            contents: include_str!(concat!("../../../control/", $name)),
            mode: 0o644,
        }
    };
}

macro_rules! service {
    ($path:literal) => {
        Template {
            path: concat!("service/", $path),
            contents: include_str!(concat!("../../../service/", $path)),
            mode: 0o755,
        }
    };
}

/// The documented defaults, one file each.
pub const CONTROL: &[Template] = &[
    control!("databytes"),
    control!("concurrencylocal"),
    control!("concurrencyremote"),
    control!("queuelifetime"),
    control!("timeoutsmtpd"),
    control!("timeoutremote"),
    control!("timeoutconnect"),
    control!("tcp.smtp"),
    control!("tcp.pop3"),
    control!("tcp.submission"),
    control!("filter.rules"),
];

/// Service directories: `service/NAME/run` and `service/NAME/log/run`.
pub const SERVICES: &[Template] = &[
    service!("smtpd/run"),
    service!("smtpd/log/run"),
    service!("submission/run"),
    service!("submission/log/run"),
    service!("pop3d/run"),
    service!("pop3d/log/run"),
    service!("send/run"),
    service!("send/log/run"),
    service!("ratelimit/run"),
    service!("ratelimit/log/run"),
];

/// The implicit-TLS services (RFC 8314), made only when their port is given to `init`
/// (`--submissions-port`, `--pop3s-port`): their usual ports 465 and 995 may be taken,
/// and they need a certificate.
pub const SUBMISSIONS: &[Template] =
    &[service!("submissions/run"), service!("submissions/log/run")];
pub const POP3S: &[Template] = &[service!("pop3s/run"), service!("pop3s/log/run")];

/// The values a template's placeholders stand for.
#[derive(Debug, Clone)]
pub struct Values {
    /// `@POSTERN_HOME@`: the instance's absolute path.
    pub home: String,
    /// `@DOMAIN@`
    pub domain: String,
    /// `@LISTEN@`: the address services listen on.
    pub listen: String,
    /// `@SMTPPORT@`, `@SUBMISSIONPORT@`, `@POP3PORT@`
    pub smtp_port: u16,
    pub submission_port: u16,
    pub pop3_port: u16,
    /// `@SUBMISSIONSPORT@`, `@POP3SPORT@`: implicit TLS (465 and 995 unless given).
    pub submissions_port: u16,
    pub pop3s_port: u16,
    /// `@NETACCOUNT@`: the network account the listeners' connections run as. With a
    /// certificate, postern-tlsd reads the key as root and then becomes it (`-u`);
    /// without one, the listener itself does. Empty in a single-user instance, where
    /// everything runs as the user who made it.
    pub net_account: String,
    /// `@LOGRUNAS@`: `…/postern-setuidgid ACCOUNT` for loggers; empty in a single-user
    /// instance.
    pub log_runas: String,
    /// `@SENDRUNAS@`: the same for postern-send.
    pub send_runas: String,
    /// `@RATELIMITRUNAS@`: the same for postern-ratelimit, preceded by
    /// `env POSTERN_HOME=HOME/ratelimit` (its own writable instance, docs/install.md).
    pub ratelimit_runas: String,
}

/// Fill in the placeholders of a template.
pub fn render(contents: &str, v: &Values) -> String {
    contents
        .replace("@POSTERN_HOME@", &v.home)
        .replace("@DOMAIN@", &v.domain)
        .replace("@LISTEN@", &v.listen)
        .replace("@SMTPPORT@", &v.smtp_port.to_string())
        .replace("@SUBMISSIONPORT@", &v.submission_port.to_string())
        .replace("@POP3PORT@", &v.pop3_port.to_string())
        .replace("@SUBMISSIONSPORT@", &v.submissions_port.to_string())
        .replace("@POP3SPORT@", &v.pop3s_port.to_string())
        .replace("@NETACCOUNT@", &v.net_account)
        .replace("@LOGRUNAS@ ", &spaced(&v.log_runas))
        .replace("@SENDRUNAS@ ", &spaced(&v.send_runas))
        .replace("@RATELIMITRUNAS@ ", &spaced(&v.ratelimit_runas))
}

/// `text ` or nothing, so an empty value leaves no double space behind.
fn spaced(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{text} ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values {
            home: "/var/postern".into(),
            domain: "example.test".into(),
            listen: "127.0.0.1".into(),
            smtp_port: 2525,
            submission_port: 2587,
            pop3_port: 2110,
            submissions_port: 2465,
            pop3s_port: 2995,
            net_account: String::new(),
            log_runas: String::new(),
            send_runas: String::new(),
            ratelimit_runas: String::new(),
        }
    }

    fn service(path: &str) -> &'static str {
        SERVICES
            .iter()
            .chain(SUBMISSIONS)
            .chain(POP3S)
            .find(|t| t.path == format!("service/{path}"))
            .expect(path)
            .contents
    }

    #[test]
    fn every_placeholder_is_filled() {
        for t in CONTROL
            .iter()
            .chain(SERVICES)
            .chain(SUBMISSIONS)
            .chain(POP3S)
        {
            let text = render(t.contents, &values());
            for p in [
                "@POSTERN_HOME@",
                "@DOMAIN@",
                "@LISTEN@",
                "@POP3PORT@",
                "@SUBMISSIONSPORT@",
                "@POP3SPORT@",
                "@NETACCOUNT@",
                "@LOGRUNAS@",
            ] {
                assert!(!text.contains(p), "{} still has {p}", t.path);
            }
        }
    }

    #[test]
    fn single_user_and_root_rendering() {
        let pop3 = render(service("pop3d/run"), &values());
        assert!(pop3.contains("127.0.0.1 2110 \"$@\""), "{pop3}");
        assert!(pop3.contains("\nnet=\n"), "{pop3}");
        let log = render(service("pop3d/log/run"), &values());
        assert!(
            log.contains("exec /var/postern/bin/postern-multilog t"),
            "{log}"
        );
        let mut root = values();
        root.net_account = "postern-net".into();
        root.log_runas = "/var/postern/bin/postern-setuidgid postern-log".into();
        let pop3 = render(service("pop3d/run"), &root);
        assert!(pop3.contains("\nnet=postern-net\n"), "{pop3}");
        let log = render(service("pop3d/log/run"), &root);
        assert!(log.contains("exec /var/postern/bin/postern-setuidgid postern-log /var/postern/bin/postern-multilog"), "{log}");
    }

    /// The run scripts are shell: run them with a stub in place of the programs and see
    /// the command line each would exec, with and without a certificate, as a single
    /// user and as root.
    #[test]
    fn run_scripts_leave_tlsd_out_without_a_certificate() {
        /// The words from `port` on: the program chain after the listener's address.
        fn from<'a>(args: &'a [String], port: &str) -> Vec<&'a str> {
            args.iter()
                .skip_while(|a| *a != port)
                .map(|s| s.as_str())
                .collect()
        }
        let dir = std::env::temp_dir().join(format!("postern-templates-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("control/tls")).unwrap();
        std::fs::write(dir.join("control/me"), "mail.example.test\n").unwrap();
        std::fs::write(
            dir.join("control/rblzones"),
            "# zones\nzen.example\n\nbl.example\n",
        )
        .unwrap();
        // The stub softlimit prints its arguments, one per line, instead of running them.
        let stub = dir.join("bin/postern-softlimit");
        std::fs::write(&stub, "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n").unwrap();
        std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let run = |name: &str, net: &str| -> Vec<String> {
            let mut v = values();
            v.home = dir.to_string_lossy().into_owned();
            v.net_account = net.into();
            let script = dir.join(format!("{name}.run"));
            std::fs::write(&script, render(service(&format!("{name}/run")), &v)).unwrap();
            let out = std::process::Command::new("sh")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| l.replace(&*dir.to_string_lossy(), "H"))
                .collect()
        };
        let smtpd = run("smtpd", "");
        assert_eq!(
            &smtpd[..3],
            ["-m", "64000000", "H/bin/postern-tcpserver"],
            "{smtpd:?}"
        );
        assert!(
            !smtpd.iter().any(|a| a.contains("tlsd") || a == "-u"),
            "{smtpd:?}"
        );
        let tail = from(&smtpd, "2525");
        assert_eq!(
            tail,
            [
                "2525",
                "H/bin/postern-rblsmtpd",
                "-r",
                "zen.example",
                "-r",
                "bl.example",
                "H/bin/postern-smtpd",
                "H/bin/postern-checkpassword",
                "true"
            ],
        );
        // The pre-greeting check goes right before smtpd when pregreetwait is not 0.
        std::fs::write(dir.join("control/pregreetwait"), "0\n").unwrap();
        assert!(!run("smtpd", "").iter().any(|a| a.contains("pregreet")));
        std::fs::write(dir.join("control/pregreetwait"), "# seconds\n3\n").unwrap();
        let smtpd = run("smtpd", "");
        let tail = from(&smtpd, "2525");
        assert_eq!(
            tail[5..8],
            [
                "bl.example",
                "H/bin/postern-pregreet",
                "H/bin/postern-smtpd"
            ],
            "{smtpd:?}"
        );
        std::fs::remove_file(dir.join("control/pregreetwait")).unwrap();
        std::fs::write(dir.join("control/tls/cert.pem"), "x").unwrap();
        let smtpd = run("smtpd", "");
        let tail = from(&smtpd, "2525");
        assert_eq!(
            tail[..3],
            ["2525", "H/bin/postern-tlsd", "H/bin/postern-rblsmtpd"],
            "{smtpd:?}"
        );
        let pop3 = run("pop3d", "root");
        let tail = from(&pop3, "2110");
        assert_eq!(
            tail[..4],
            ["2110", "H/bin/postern-tlsd", "-u", "root"],
            "{pop3:?}"
        );
        assert!(
            !pop3[..pop3.len() - tail.len()].contains(&"-u".to_string()),
            "the listener keeps root: {pop3:?}"
        );
        std::fs::remove_file(dir.join("control/tls/cert.pem")).unwrap();
        let sub = run("submission", "root");
        assert!(!sub.iter().any(|a| a.contains("tlsd")), "{sub:?}");
        let head: Vec<&str> = sub
            .iter()
            .take_while(|a| *a != "2587")
            .map(|s| s.as_str())
            .collect();
        assert!(
            head.windows(4).any(|w| w == ["-u", "0", "-g", "0"]),
            "the listener drops: {sub:?}"
        );
        // Implicit TLS: without a certificate the service does not listen, and sleeps
        // (a `sleep` first in PATH that returns at once stands in for the real one).
        let sleep = dir.join("fakebin/sleep");
        std::fs::create_dir_all(sleep.parent().unwrap()).unwrap();
        std::fs::write(&sleep, "#!/bin/sh\necho \"slept $1\"\n").unwrap();
        std::fs::set_permissions(&sleep, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let path = format!(
            "{}:{}",
            sleep.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let implicit = |name: &str, net: &str| -> Vec<String> {
            let mut v = values();
            v.home = dir.to_string_lossy().into_owned();
            v.net_account = net.into();
            let script = dir.join(format!("{name}.run"));
            std::fs::write(&script, render(service(&format!("{name}/run")), &v)).unwrap();
            let out = std::process::Command::new("sh")
                .arg(&script)
                .env("PATH", &path)
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| l.replace(&*dir.to_string_lossy(), "H"))
                .collect()
        };
        let subs = implicit("submissions", "");
        assert_eq!(
            subs,
            [
                "submissions: no control/tls/cert.pem: not listening on port 2465; looking again in 300 seconds",
                "slept 300"
            ]
        );
        std::fs::write(dir.join("control/tls/cert.pem"), "x").unwrap();
        let subs = implicit("submissions", "root");
        assert_eq!(
            from(&subs, "2465"),
            [
                "2465",
                "H/bin/postern-tlsd",
                "-i",
                "-u",
                "root",
                "H/bin/postern-smtpd",
                "-s",
                "H/bin/postern-checkpassword",
                "true"
            ]
        );
        assert!(subs.contains(&"H/control/tcp.submission.cdb".to_string()));
        assert!(!subs.contains(&"-M".to_string()), "{subs:?}");
        let pop3s = implicit("pop3s", "");
        assert_eq!(
            from(&pop3s, "2995"),
            [
                "2995",
                "H/bin/postern-tlsd",
                "-i",
                "H/bin/postern-popup",
                "mail.example.test",
                "H/bin/postern-checkpassword",
                "H/bin/postern-pop3d"
            ]
        );
        assert!(pop3s.contains(&"H/control/tcp.pop3.cdb".to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
