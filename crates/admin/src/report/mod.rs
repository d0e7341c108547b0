//! `posternctl report [--since WHEN] [--html FILE] [--follow [--interval SECS]]` and
//! `posternctl report --metrics FILE`: the instance's multilog logs summarised — mail in
//! and out per hour, volume, refusals by category, top senders, recipient domains,
//! blocked IPs, viruses, queue size.
//!
//! - [`logs`]: finding the log directories and reading their files in time order.
//! - [`events`]: the one table mapping producers' events to what is counted.
//! - [`stats`]: the counting.
//! - [`text`]: the terminal report; [`html`] and [`svg`]: the one-file HTML page.
//! - [`follow`]: `--follow`, a live one-line summary.
//! - [`metrics`]: `--metrics FILE`, the numbers in the Prometheus text format.

pub mod events;
pub mod follow;
pub mod html;
pub mod logs;
pub mod metrics;
pub mod stats;
pub mod svg;
pub mod text;

use postern_common::{Error, Result, ResultExt};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Seconds between `--follow` lines unless `--interval` says otherwise.
pub const DEFAULT_INTERVAL: u64 = 5;
/// Longest `--interval` accepted.
pub const MAX_INTERVAL: u64 = 3600;

const USAGE: &str =
    "posternctl report [--since WHEN] [--html FILE] [--follow [--interval SECS]] [--metrics FILE] [--home DIR]";

/// What `posternctl report` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub home: PathBuf,
    /// Count only lines from this time on (unix seconds).
    pub since: Option<i64>,
    pub html: Option<PathBuf>,
    pub follow: bool,
    pub interval: u64,
    /// Write the numbers in the Prometheus text format to this file instead of a
    /// report ([`metrics`]).
    pub metrics: Option<PathBuf>,
}

impl Options {
    /// Check the command line's values; a bad one is a usage error (exit 100).
    pub fn new(
        home: PathBuf,
        since: Option<String>,
        html: Option<PathBuf>,
        follow: bool,
        interval: Option<u64>,
        metrics: Option<PathBuf>,
    ) -> Result<Options> {
        if metrics.is_some() && (since.is_some() || html.is_some() || follow) {
            return Err(Error::usage(format!(
                "report: --metrics goes alone: its counters cover every log ({USAGE})"
            )));
        }
        let now = chrono::Utc::now().timestamp();
        let since = match since {
            Some(text) => Some(parse_since(&text, now).ok_or_else(|| {
                Error::usage(format!(
                    "report: bad --since {:?}: want YYYY-MM-DD[ HH:MM[:SS]], or 30m, 24h, 7d ({USAGE})",
                    postern_common::logline::printable(&text)
                ))
            })?),
            None => None,
        };
        if follow && html.is_some() {
            return Err(Error::usage(format!(
                "report: --follow and --html do not go together ({USAGE})"
            )));
        }
        if interval.is_some() && !follow {
            return Err(Error::usage(format!(
                "report: --interval goes with --follow ({USAGE})"
            )));
        }
        let interval = interval.unwrap_or(DEFAULT_INTERVAL);
        if interval == 0 || interval > MAX_INTERVAL {
            return Err(Error::usage(format!(
                "report: --interval must be 1 to {MAX_INTERVAL} seconds ({USAGE})"
            )));
        }
        Ok(Options {
            home,
            since,
            html,
            follow,
            interval,
            metrics,
        })
    }
}

/// `--since`: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` (or with `T`) in local time, a
/// multilog stamp `@4000…`, or an age `N` + `m`/`h`/`d`/`w` before `now`.
pub fn parse_since(text: &str, now: i64) -> Option<i64> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    let text = text.trim();
    if let Some(unit) = text.chars().last().filter(|c| "mhdw".contains(*c)) {
        let n: i64 = text[..text.len() - 1].parse().ok().filter(|n| *n >= 0)?;
        let secs = match unit {
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => 7 * 86_400,
        };
        return now.checked_sub(n.checked_mul(secs)?);
    }
    if text.starts_with('@') {
        return postern_common::tai64n::Tai64n::parse_label(text.as_bytes())
            .filter(|_| text.len() == 25)
            .map(|t| t.unix_secs());
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|d| d.timestamp())
}

/// Read every log under `home/log/` (lines from `since` on) into the numbers.
pub fn gather(home: &Path, since: Option<i64>) -> Result<stats::Stats> {
    let mut stats = stats::Stats::default();
    for dir in logs::find(home)? {
        for file in logs::files(&dir.path)? {
            // An archive holds only lines written before its rotation.
            if matches!((file.rotated, since), (Some(r), Some(s)) if r < s) {
                continue;
            }
            logs::read_from(&file, 0, true, &mut |t, line| {
                if since.is_some_and(|s| t.is_none_or(|t| t < s)) {
                    return;
                }
                stats.add(&dir.name, t, line);
            })?;
        }
    }
    stats.queue = queue_size(home);
    Ok(stats)
}

/// Messages in the queue, counted as postern-qstat counts them (`new/` + `mess/`); `None`
/// when the queue cannot be read (not there, or not ours to read).
pub fn queue_size(home: &Path) -> Option<stats::Queue> {
    let count = |sub: &str| -> Option<u64> {
        let it = std::fs::read_dir(home.join("queue").join(sub)).ok()?;
        Some(
            it.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count() as u64,
        )
    };
    let new = count("new")?;
    let mess = count("mess")?;
    Some(stats::Queue {
        total: new + mess,
        unprocessed: new,
    })
}

/// `posternctl report`.
pub fn run(opts: &Options) -> Result<()> {
    if let Some(file) = &opts.metrics {
        return metrics::write(&opts.home, file);
    }
    if opts.follow {
        return follow::run(opts);
    }
    let stats = gather(&opts.home, opts.since)?;
    let report = text::render(&stats, &opts.home, opts.since);
    if let Some(file) = &opts.html {
        let page = html::render(&stats, &opts.home, opts.since);
        postern_common::atomic::write_atomic(file, page.as_bytes(), 0o644)
            .temp(format!("unable to write {}", file.display()))?;
    }
    let mut out = std::io::stdout().lock();
    let mut written = out.write_all(report.as_bytes());
    if let Some(file) = &opts.html {
        written = written.and_then(|_| writeln!(out, "HTML report written to {}", file.display()));
    }
    match written.and_then(|_| out.flush()) {
        // `posternctl report | head`: the reader has seen what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.temp("unable to write the report"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_ages_dates_and_stamps() {
        let now = 1_700_000_000;
        assert_eq!(parse_since("30m", now), Some(now - 1800));
        assert_eq!(parse_since("24h", now), Some(now - 86_400));
        assert_eq!(parse_since("7d", now), Some(now - 7 * 86_400));
        let label = postern_common::tai64n::Tai64n::from_unix(1234, 0).label();
        assert_eq!(parse_since(&label, now), Some(1234));
        assert!(parse_since("2026-11-26", now).is_some());
        assert!(parse_since("2026-11-26 06:30", now).is_some());
        assert!(parse_since("2026-11-26T06:30:10", now).is_some());
        for bad in [
            "",
            "yesterday",
            "h",
            "-",
            "-5h",
            "2026-13-01",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_since(bad, now), None, "{bad:?}");
        }
    }
}
