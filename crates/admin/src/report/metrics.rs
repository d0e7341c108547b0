//! `posternctl report --metrics FILE`: the report's numbers in the Prometheus text
//! exposition format (version 0.0.4, what node_exporter's textfile collector reads),
//! written atomically (a temporary file renamed into place) so a collector never reads
//! half a file.
//!
//! The counts are the report's own ([`super::stats`], over every log still on disk);
//! the gauges (queue, quarantine, certificate) are measured when the file is written.
//! No listener: a cron job or a supervised loop runs it, and node_exporter (or any
//! collector that reads files) serves it — no new network surface in postern.
//!
//! Counters are counts over the logs multilog still keeps: when it removes its oldest
//! archive they go down, which Prometheus' `rate()`/`increase()` take as a counter
//! reset, as after a restart.

use super::events::Category;
use super::stats::Stats;
use postern_common::{Result, ResultExt};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

/// Most entries counted in a quarantine directory.
pub const MAX_QUARANTINE_ENTRIES: u64 = 1_000_000;

/// The `reason` label of a refusal category (snake case, stable: dashboards key on it).
pub fn reason_label(c: Category) -> &'static str {
    match c {
        Category::Relay => "relay",
        Category::UnknownUser => "unknown_user",
        Category::Rbl => "rbl",
        Category::BadSender => "bad_sender",
        Category::Virus => "virus",
        Category::Spam => "spam",
        Category::ContentRule => "content_rule",
        Category::Mime => "mime",
        Category::RateLimit => "rate_limit",
        Category::AuthFailure => "auth_failure",
        Category::AuthRequired => "auth_required",
        Category::AccessRule => "access_rule",
        Category::Pregreet => "pregreet",
        Category::Other => "other",
    }
}

/// What is measured on the instance when the file is written (not from the logs).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Gauges {
    /// (messages in `queue/new` + `queue/mess`, age in seconds of the oldest) — `None`
    /// when the queue cannot be read (not ours to read).
    pub queue: Option<(u64, u64)>,
    /// Messages in `quarantine/new` + `quarantine/cur`; `None` when unreadable.
    pub quarantine: Option<u64>,
    /// Days until `control/tls/cert.pem` expires (negative once expired); `None`
    /// without a certificate or when openssl cannot read it.
    pub cert_days_left: Option<i64>,
    /// Unix time the file was made.
    pub now: i64,
}

impl Gauges {
    pub fn measure(home: &Path) -> Gauges {
        let now = SystemTime::now();
        Gauges {
            queue: crate::audit::queue::measure(home, now)
                .ok()
                .map(|(n, age)| (n, age.unwrap_or(0))),
            quarantine: quarantine_size(home),
            cert_days_left: cert_days_left(home),
            now: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        }
    }
}

/// Files in `quarantine/new` and `quarantine/cur` (postern-scan's Maildir), dot-files
/// aside; `None` when there is a quarantine we may not read.
pub fn quarantine_size(home: &Path) -> Option<u64> {
    let mut n = 0;
    for sub in ["new", "cur"] {
        let entries = match std::fs::read_dir(home.join("quarantine").join(sub)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        for e in entries.filter_map(|e| e.ok()) {
            if !e.file_name().to_string_lossy().starts_with('.') {
                n += 1;
            }
            if n >= MAX_QUARANTINE_ENTRIES {
                return Some(n);
            }
        }
    }
    Some(n)
}

/// Whole days until `control/tls/cert.pem`'s notAfter, read with `openssl x509`
/// (as `posternctl audit` reads it).
pub fn cert_days_left(home: &Path) -> Option<i64> {
    let cert = home.join("control/tls/cert.pem");
    if !cert.is_file() {
        return None;
    }
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(&cert)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let end = text
        .lines()
        .find_map(|l| l.strip_prefix("notAfter="))
        .and_then(crate::audit::tls::parse_openssl_date)?;
    let secs = (end - chrono::Utc::now().naive_utc()).num_seconds();
    Some(secs.div_euclid(86_400))
}

/// One metric family: `# HELP`, `# TYPE` and its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn one(value: impl ToString) -> Vec<(String, String)> {
    vec![(String::new(), value.to_string())]
}

/// The file's text: every family with its HELP and TYPE; the gauges that could not be
/// measured are left out (a collector then shows no value rather than a wrong 0).
pub fn render(stats: &Stats, gauges: &Gauges) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "postern_messages_accepted_total",
        "counter",
        "Messages postern-smtpd accepted and queued (smtp and submission), from the logs.",
        &one(stats.in_msgs),
    );
    family(
        &mut out,
        "postern_messages_accepted_bytes_total",
        "counter",
        "Size in bytes of the messages accepted, from the logs.",
        &one(stats.in_bytes),
    );
    let refused: Vec<(String, String)> = Category::ALL
        .iter()
        .map(|&c| {
            (
                format!("{{reason=\"{}\"}}", reason_label(c)),
                stats.rejected_in(c).to_string(),
            )
        })
        .collect();
    family(
        &mut out,
        "postern_refused_total",
        "counter",
        "Messages and clients refused, by reason (the categories of posternctl report), from the logs.",
        &refused,
    );
    let deliveries = [
        ("local", "delivered", stats.local_msgs),
        ("local", "deferred", stats.local_deferred),
        ("local", "bounced", stats.local_failed),
        ("remote", "delivered", stats.out_msgs),
        ("remote", "deferred", stats.remote_deferred),
        ("remote", "bounced", stats.remote_failed),
    ];
    let deliveries: Vec<(String, String)> = deliveries
        .iter()
        .map(|(channel, result, n)| {
            (
                format!("{{channel=\"{channel}\",result=\"{result}\"}}"),
                n.to_string(),
            )
        })
        .collect();
    family(
        &mut out,
        "postern_deliveries_total",
        "counter",
        "Delivery attempts by postern-send, one per recipient: delivered, deferred (tried again later) or bounced (failed for good), by channel.",
        &deliveries,
    );
    let greylist: Vec<(String, String)> = ["defer", "retried", "known", "client"]
        .iter()
        .map(|r| {
            (
                format!("{{result=\"{r}\"}}"),
                stats.greylist.get(r).to_string(),
            )
        })
        .collect();
    family(
        &mut out,
        "postern_greylist_total",
        "counter",
        "Greylisting answers at RCPT, one per recipient: defer (451), retried (accepted after the delay), known (a triplet accepted before), client (a client network that retried enough), from the logs.",
        &greylist,
    );
    family(
        &mut out,
        "postern_auth_failures_total",
        "counter",
        "Failed logins (SMTP AUTH, POP3, Dovecot through postern-checkpassword), each counted once.",
        &one(stats.rejected_in(Category::AuthFailure)),
    );
    family(
        &mut out,
        "postern_ratelimit_blocks_total",
        "counter",
        "Rate-limit blocks: postern-ratelimit's block, paranoid and hold actions and postern-smtpd's refusals of blocked senders.",
        &one(stats.rejected_in(Category::RateLimit)),
    );
    family(
        &mut out,
        "postern_log_lines_total",
        "counter",
        "Log lines read; lines of no known event are counted in other.",
        &[
            (
                "{kind=\"known\"}".to_string(),
                (stats.lines - stats.other_lines).to_string(),
            ),
            (
                "{kind=\"other\"}".to_string(),
                stats.other_lines.to_string(),
            ),
        ],
    );
    if let Some((n, age)) = gauges.queue {
        family(
            &mut out,
            "postern_queue_messages",
            "gauge",
            "Messages in the queue (queue/new and queue/mess, as postern-qstat counts them).",
            &one(n),
        );
        family(
            &mut out,
            "postern_queue_oldest_age_seconds",
            "gauge",
            "Age of the oldest message in the queue, by modification time (0 when empty).",
            &one(age),
        );
    }
    if let Some(n) = gauges.quarantine {
        family(
            &mut out,
            "postern_quarantine_messages",
            "gauge",
            "Refused messages kept in quarantine/ (new and cur).",
            &one(n),
        );
    }
    if let Some(days) = gauges.cert_days_left {
        family(
            &mut out,
            "postern_tls_certificate_days_left",
            "gauge",
            "Whole days until control/tls/cert.pem expires (negative once expired).",
            &one(days),
        );
    }
    if let Some(last) = stats.last {
        family(
            &mut out,
            "postern_log_last_line_timestamp_seconds",
            "gauge",
            "Unix time of the newest log line read.",
            &one(last),
        );
    }
    family(
        &mut out,
        "postern_metrics_timestamp_seconds",
        "gauge",
        "Unix time this file was written.",
        &one(gauges.now),
    );
    out
}

/// Gather the numbers of the instance at `home` and write them to `file` atomically
/// (mode 0644: node_exporter runs as its own account).
pub fn write(home: &Path, file: &Path) -> Result<()> {
    let stats = super::gather(home, None)?;
    let text = render(&stats, &Gauges::measure(home));
    postern_common::atomic::write_atomic(file, text.as_bytes(), 0o644)
        .temp(format!("unable to write {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_and_unmeasured_gauges_are_left_out() {
        let mut s = Stats::default();
        s.add(
            "smtpd",
            Some(1_700_000_000),
            "event=accept ip=192.0.2.1 from=<a@x.test> rcpts=1 size=10",
        );
        s.add(
            "smtpd",
            Some(1_700_000_001),
            "event=reject ip=192.0.2.2 reason=relay",
        );
        let g = Gauges {
            now: 1_700_000_100,
            ..Gauges::default()
        };
        let text = render(&s, &g);
        assert!(
            text.contains("postern_messages_accepted_total 1\n"),
            "{text}"
        );
        assert!(text.contains("postern_refused_total{reason=\"relay\"} 1\n"));
        assert!(text.contains("postern_refused_total{reason=\"other\"} 0\n"));
        assert!(!text.contains("postern_queue_messages"));
        assert!(!text.contains("postern_tls_certificate_days_left"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
