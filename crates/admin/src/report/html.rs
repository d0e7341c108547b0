//! The HTML report: one self-contained file (inline CSS and SVG, no scripts, nothing
//! fetched), so it can be mailed, archived or opened offline. Every value from the logs
//! goes through [`esc`]: sender addresses are chosen by strangers.

use super::events::Category;
use super::stats::{local_time, Counter, Stats, Step};
use super::svg::{self, esc, Series};
use super::text::{bytes, period};
use std::fmt::Write as _;
use std::path::Path;

/// Rows in each "top" chart.
pub const TOP: usize = 10;
/// Most hourly columns drawn; a longer range is drawn day by day.
pub const MAX_HOUR_COLUMNS: usize = 168;

const IN: &str = "#2f6fdf";
const OUT: &str = "#17a2a0";
const REJECT: &str = "#d9534f";
const NEUTRAL: &str = "#7a5cc4";
const VIRUS: &str = "#e08a1e";

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d2330;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 40px; }
header h1 { font-size: 26px; margin: 0 0 4px; font-weight: 650; letter-spacing: -0.01em; }
header p { margin: 0; color: #5b6474; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 14px; margin: 22px 0; }
.card { background: #fff; border-radius: 10px; padding: 14px 16px; box-shadow: 0 1px 2px rgba(20,30,50,.08), 0 0 0 1px rgba(20,30,50,.05); }
.card .k { font-size: 12px; text-transform: uppercase; letter-spacing: .06em; color: #6b7385; }
.card .v { font-size: 28px; font-weight: 650; font-variant-numeric: tabular-nums; margin-top: 2px; }
.card .s { font-size: 13px; color: #6b7385; }
.card.in .v { color: #2f6fdf; } .card.out .v { color: #128583; } .card.rej .v { color: #c9302c; }
section { background: #fff; border-radius: 10px; padding: 16px 18px 10px; margin-bottom: 16px;
  box-shadow: 0 1px 2px rgba(20,30,50,.08), 0 0 0 1px rgba(20,30,50,.05); }
section h2 { font-size: 16px; margin: 0 0 10px; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 16px; }
.grid section { margin-bottom: 0; }
.chart { width: 100%; height: auto; display: block; }
.chart text { font-family: inherit; fill: #4a5263; }
.chart .axis { font-size: 12px; } .chart .legend { font-size: 13px; }
.chart .label { font-size: 13px; fill: #1d2330; } .chart .num { font-size: 13px; font-variant-numeric: tabular-nums; }
.chart .grid { stroke: #e6e8ec; } .chart .base { stroke: #9aa1ad; } .chart .track { fill: #f1f2f5; }
.none { color: #8a92a1; font-style: italic; margin: 4px 0 12px; }
footer { color: #7a8291; font-size: 13px; margin-top: 22px; }
"#;

fn card(out: &mut String, class: &str, key: &str, value: &str, sub: &str) {
    let _ = write!(
        out,
        r#"<div class="card {class}"><div class="k">{}</div><div class="v">{}</div><div class="s">{}</div></div>"#,
        esc(key),
        esc(value),
        esc(sub)
    );
}

fn top_chart(out: &mut String, id: &str, title: &str, counter: &Counter, color: &str) {
    let _ = write!(out, "<section><h2>{}</h2>", esc(title));
    if counter.is_empty() {
        out.push_str(r#"<p class="none">none</p>"#);
    } else {
        let mut items = counter.top(TOP);
        let rest = counter.total() - items.iter().map(|i| i.1).sum::<u64>();
        if rest > 0 {
            items.push(("(others)".into(), rest));
        }
        out.push_str(&svg::bars(id, &items, color));
    }
    out.push_str("</section>");
}

/// The whole page.
pub fn render(stats: &Stats, home: &Path, since: Option<i64>) -> String {
    let home_text = home.display().to_string();
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>postern mail report — {}</title><style>{STYLE}</style></head><body><main>"#,
        esc(&home_text)
    );
    let _ = write!(
        out,
        "<header><h1>Mail report</h1><p>{} · {}</p></header>",
        esc(&home_text),
        esc(&period(stats, since))
    );

    out.push_str(r#"<div class="cards">"#);
    card(
        &mut out,
        "in",
        "Messages in",
        &stats.in_msgs.to_string(),
        &bytes(stats.in_bytes),
    );
    card(
        &mut out,
        "out",
        "Sent out",
        &stats.out_msgs.to_string(),
        &format!(
            "{} · {} deferred · {} failed",
            bytes(stats.out_bytes),
            stats.remote_deferred,
            stats.remote_failed
        ),
    );
    card(
        &mut out,
        "",
        "Delivered locally",
        &stats.local_msgs.to_string(),
        &format!(
            "{} deferred · {} failed",
            stats.local_deferred, stats.local_failed
        ),
    );
    card(
        &mut out,
        "rej",
        "Rejected",
        &stats.total_rejected().to_string(),
        &format!("{} blocked IPs", stats.blocked_ips.len()),
    );
    match stats.queue {
        Some(q) => card(
            &mut out,
            "",
            "Queue",
            &q.total.to_string(),
            &format!("{} not yet preprocessed", q.unprocessed),
        ),
        None => card(&mut out, "", "Queue", "–", "queue/ not readable"),
    }
    out.push_str("</div>");

    let (step, series) = stats.series(MAX_HOUR_COLUMNS);
    let (per, fmt) = match step {
        Step::Hour if series.len() <= 24 => ("hour", "%H:00"),
        Step::Hour => ("hour", "%d %H:00"),
        Step::Day => ("day", "%m-%d"),
    };
    let labels: Vec<String> = series.iter().map(|(t, _)| local_time(*t, fmt)).collect();
    let pick = |f: fn(&super::stats::Bucket) -> u64| series.iter().map(|(_, b)| f(b)).collect();
    let _ = write!(out, "<section><h2>Messages per {per}</h2>");
    if series.is_empty() {
        out.push_str(r#"<p class="none">no log lines in this period</p>"#);
    } else {
        out.push_str(&svg::columns(
            "chart-messages",
            &labels,
            &[
                Series {
                    name: "in",
                    color: IN,
                    values: pick(|b| b.in_msgs),
                },
                Series {
                    name: "out",
                    color: OUT,
                    values: pick(|b| b.out_msgs),
                },
                Series {
                    name: "rejected",
                    color: REJECT,
                    values: pick(|b| b.rejected),
                },
            ],
            |v| v.to_string(),
        ));
    }
    out.push_str("</section>");
    if !series.is_empty() {
        let _ = write!(out, "<section><h2>Volume per {per}</h2>");
        out.push_str(&svg::columns(
            "chart-volume",
            &labels,
            &[
                Series {
                    name: "in",
                    color: IN,
                    values: pick(|b| b.in_bytes),
                },
                Series {
                    name: "out",
                    color: OUT,
                    values: pick(|b| b.out_bytes),
                },
            ],
            bytes,
        ));
        out.push_str("</section>");
    }

    out.push_str(r#"<div class="grid">"#);
    out.push_str("<section><h2>Rejections by reason</h2>");
    let reasons: Vec<(String, u64)> = Category::ALL
        .iter()
        .map(|&c| (c.label().to_string(), stats.rejected_in(c)))
        .collect();
    out.push_str(&svg::bars("chart-rejections", &reasons, REJECT));
    out.push_str("</section>");
    top_chart(
        &mut out,
        "chart-blocked-ips",
        "Top blocked IPs",
        &stats.blocked_ips,
        REJECT,
    );
    top_chart(&mut out, "chart-senders", "Top senders", &stats.senders, IN);
    top_chart(
        &mut out,
        "chart-domains",
        "Recipient domains",
        &stats.rcpt_domains,
        OUT,
    );
    top_chart(
        &mut out,
        "chart-viruses",
        "Viruses by name",
        &stats.viruses,
        VIRUS,
    );
    if !stats.other_reasons.is_empty() {
        top_chart(
            &mut out,
            "chart-other",
            "Other refusals",
            &stats.other_reasons,
            NEUTRAL,
        );
    }
    out.push_str("</div>");

    let logs: Vec<String> = stats
        .sources
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    let now = chrono::Utc::now().timestamp();
    let _ = writeln!(
        out,
        "<footer>Made by posternctl report on {} from {} log lines ({}){}.</footer></main></body></html>",
        esc(&local_time(now, "%Y-%m-%d %H:%M")),
        stats.lines,
        esc(&logs.join(", ")),
        if stats.other_lines > 0 {
            format!(
                "; {} lines with events the report does not know",
                stats.other_lines
            )
        } else {
            String::new()
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary card titled `key`: its value and its line below.
    fn card_of(page: &str, key: &str) -> (String, String) {
        let start = page
            .find(&format!(r#"<div class="k">{key}</div>"#))
            .unwrap_or_else(|| panic!("no card {key}"));
        let rest = &page[start..];
        let field = |class: &str| {
            let open = format!(r#"<div class="{class}">"#);
            let at = rest.find(&open).unwrap() + open.len();
            rest[at..at + rest[at..].find("</div>").unwrap()].to_string()
        };
        (field("v"), field("s"))
    }

    #[test]
    fn each_delivery_card_counts_only_its_own_kind() {
        let mut s = Stats::default();
        for line in [
            "event=new id=1 from=<a@here.test> rcpts=3 size=2000",
            "event=delivery id=1 rcpt=<b@far.test> kind=remote result=fail tries=1",
            "event=delivery id=1 rcpt=<c@far.test> kind=remote result=fail tries=1",
            "event=delivery id=1 rcpt=<d@far.test> kind=remote result=defer tries=1",
            "event=delivery id=1 rcpt=<e@here.test> kind=local result=ok tries=1",
        ] {
            s.add("send", Some(1_700_000_000), line);
        }
        let page = render(&s, Path::new("/h"), None);
        assert_eq!(
            card_of(&page, "Delivered locally"),
            ("1".to_string(), "0 deferred · 0 failed".to_string())
        );
        assert_eq!(
            card_of(&page, "Sent out"),
            ("0".to_string(), "0 B · 1 deferred · 2 failed".to_string())
        );
    }

    #[test]
    fn page_is_self_contained_and_escaped() {
        let mut s = Stats::default();
        s.add(
            "smtpd",
            Some(1_700_000_000),
            "event=accept ip=192.0.2.1 from=<\"<img src=x>\"@x.test> size=10",
        );
        let page = render(&s, Path::new("/h"), None);
        assert!(page.contains(r#"id="chart-messages""#));
        assert!(page.contains(r#"id="chart-senders""#));
        assert!(!page.contains("<img"));
        assert!(!page.contains("<script"));
        for external in ["src=", "href=", "url(", "@import", "<script"] {
            assert!(!page.contains(external), "{external}");
        }
    }
}
