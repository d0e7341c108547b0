//! The terminal report: short sections of aligned columns, names left, numbers right.
//! Log values are printed through [`printable`], so a hostile sender address cannot put
//! terminal escapes on the admin's screen.

use super::events::Category;
use super::stats::{local_time, Stats, Step};
use postern_common::logline::printable;
use std::fmt::Write as _;
use std::path::Path;

/// Rows in each "top" table.
pub const TOP: usize = 10;
/// Most hourly rows printed; a longer range is printed day by day.
pub const MAX_HOUR_ROWS: usize = 48;

/// `1234` → `1.2 kB`, decimal units as `ls -h --si` prints them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Rows under a heading row: the first column left-aligned, the others right-aligned.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let cols = head.len();
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate().take(cols) {
            if i == 0 {
                let _ = write!(text, "{cell:<w$}", w = width[0]);
            } else {
                let _ = write!(text, "  {cell:>w$}", w = width[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    out.push('\n');
    line(out, &head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in rows {
        line(out, row);
    }
}

/// The time range covered, as one phrase.
pub fn period(stats: &Stats, since: Option<i64>) -> String {
    let fmt = "%Y-%m-%d %H:%M:%S";
    let mut text = match (stats.first, stats.last) {
        (Some(a), Some(b)) => format!("{} to {}", local_time(a, fmt), local_time(b, fmt)),
        _ => "no log lines".to_string(),
    };
    if let Some(s) = since {
        let _ = write!(text, " (since {})", local_time(s, fmt));
    }
    text
}

fn top_rows(counter: &super::stats::Counter) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = counter
        .top(TOP)
        .into_iter()
        .map(|(k, v)| vec![printable(k), v.to_string()])
        .collect();
    let shown: u64 = rows.iter().filter_map(|r| r[1].parse::<u64>().ok()).sum();
    let rest = counter.total() - shown;
    if rest > 0 {
        rows.push(vec!["(others)".into(), rest.to_string()]);
    }
    rows
}

/// The whole report.
pub fn render(stats: &Stats, home: &Path, since: Option<i64>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "postern report for {}", home.display());
    let _ = writeln!(out, "period     {}", period(stats, since));
    let logs: Vec<String> = stats
        .sources
        .iter()
        .map(|(name, n)| format!("{} {n}", printable(name)))
        .collect();
    let _ = writeln!(
        out,
        "lines      {} ({})",
        stats.lines,
        if logs.is_empty() {
            "no logs".to_string()
        } else {
            logs.join(", ")
        }
    );
    let _ = match stats.queue {
        Some(q) => writeln!(
            out,
            "queue      {} message{} ({} not yet preprocessed)",
            q.total,
            if q.total == 1 { "" } else { "s" },
            q.unprocessed
        ),
        None => writeln!(out, "queue      unknown (queue/ not readable)"),
    };

    table(
        &mut out,
        &["mail", "messages", "bytes"],
        &[
            vec![
                "in (smtpd)".into(),
                stats.in_msgs.to_string(),
                bytes(stats.in_bytes),
            ],
            vec![
                "out (remote)".into(),
                stats.out_msgs.to_string(),
                bytes(stats.out_bytes),
            ],
            vec![
                "remote deferred".into(),
                stats.remote_deferred.to_string(),
                String::new(),
            ],
            vec![
                "remote failed".into(),
                stats.remote_failed.to_string(),
                String::new(),
            ],
            vec![
                "delivered locally".into(),
                stats.local_msgs.to_string(),
                String::new(),
            ],
            vec![
                "local deferred".into(),
                stats.local_deferred.to_string(),
                String::new(),
            ],
            vec![
                "local failed".into(),
                stats.local_failed.to_string(),
                String::new(),
            ],
        ],
    );

    let (step, series) = stats.series(MAX_HOUR_ROWS);
    if !series.is_empty() {
        let (head, fmt) = match step {
            Step::Hour => ("hour", "%Y-%m-%d %H:00"),
            Step::Day => ("day", "%Y-%m-%d"),
        };
        let rows: Vec<Vec<String>> = series
            .iter()
            .map(|(t, b)| {
                vec![
                    local_time(*t, fmt),
                    b.in_msgs.to_string(),
                    b.out_msgs.to_string(),
                    bytes(b.in_bytes),
                    b.rejected.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[head, "in", "out", "in bytes", "rejected"],
            &rows,
        );
    }

    let mut rows: Vec<Vec<String>> = Category::ALL
        .iter()
        .map(|&c| vec![c.label().to_string(), stats.rejected_in(c).to_string()])
        .collect();
    rows.push(vec!["total".into(), stats.total_rejected().to_string()]);
    table(&mut out, &["rejections", "count"], &rows);
    if !stats.other_reasons.is_empty() {
        let other: Vec<String> = stats
            .other_reasons
            .top(TOP)
            .into_iter()
            .map(|(k, v)| format!("{} {v}", printable(k)))
            .collect();
        let _ = writeln!(out, "(other: {})", other.join(", "));
    }
    if stats.audit_probe > 0 {
        let _ = writeln!(
            out,
            "({} of these were posternctl audit's own relay probe: not in the blocked IPs)",
            stats.audit_probe
        );
    }

    if !stats.greylist.is_empty() {
        let rows: Vec<Vec<String>> = ["defer", "retried", "known", "client"]
            .iter()
            .map(|r| vec![r.to_string(), stats.greylist.get(r).to_string()])
            .collect();
        table(&mut out, &["greylisting", "recipients"], &rows);
    }
    if !stats.scores.is_empty() {
        let rows: Vec<Vec<String>> = super::stats::SCORE_RANGES
            .iter()
            .map(|r| vec![r.to_string(), stats.scores.get(r).to_string()])
            .collect();
        table(&mut out, &["spam score", "messages"], &rows);
    }

    for (head, count, counter) in [
        ("top senders", "accepted", &stats.senders),
        ("recipient domains", "recipients", &stats.rcpt_domains),
        ("top blocked IPs", "refusals", &stats.blocked_ips),
        ("viruses", "found", &stats.viruses),
    ] {
        if !counter.is_empty() {
            table(&mut out, &[head, count], &top_rows(counter));
        }
    }
    if stats.other_lines > 0 {
        let _ = writeln!(
            out,
            "\n{} {} the report does not know (counted as other)",
            stats.other_lines,
            if stats.other_lines == 1 {
                "line with an event"
            } else {
                "lines with events"
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1234), "1.2 kB");
        assert_eq!(bytes(5_600_000), "5.6 MB");
    }

    #[test]
    fn columns_line_up() {
        let mut out = String::new();
        table(
            &mut out,
            &["name", "n"],
            &[
                vec!["a".into(), "1".into()],
                vec!["longer name".into(), "1234".into()],
            ],
        );
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(lines[0], "name            n");
        assert_eq!(lines[1], "a               1");
        assert_eq!(lines[2], "longer name  1234");
    }

    #[test]
    fn hostile_values_are_printable() {
        let mut s = Stats::default();
        s.add(
            "smtpd",
            Some(0),
            "event=accept from=\"<\\x1b[31m@x>\" size=1",
        );
        let text = render(&s, Path::new("/h"), None);
        assert!(!text.contains('\x1b'));
        assert!(text.contains("\\x1b[31m@x"));
    }
}
