//! Hand-written SVG bar charts for the HTML report: no scripts, no fonts to fetch, no
//! library — plain `<rect>` and `<text>` elements, with a `<title>` on every bar so a
//! browser shows the exact number on hover. Every text is escaped with [`esc`].

use std::fmt::Write as _;

/// Width of every chart's coordinate system; the page scales it to fit.
pub const WIDTH: u32 = 1000;
/// Height of the column charts.
pub const COLUMN_HEIGHT: u32 = 260;
/// Width of the horizontal bar charts, drawn two side by side on a page.
pub const BARS_WIDTH: u32 = 520;
/// Height of one row of a horizontal bar chart.
pub const ROW_HEIGHT: u32 = 26;
/// Longest label drawn in a horizontal bar chart (the `<title>` keeps the whole text).
pub const MAX_LABEL: usize = 28;
/// Most x-axis labels under a column chart; the others are left out.
pub const MAX_X_LABELS: usize = 12;

/// Escape text for HTML and SVG content and attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_LABEL {
        return text.to_string();
    }
    let mut s: String = text.chars().take(MAX_LABEL - 1).collect();
    s.push('…');
    s
}

/// A round top for the y axis and its step: 1, 2 or 5 × 10^k, at most 5 steps.
pub fn nice_scale(max: u64) -> (u64, u64) {
    if max == 0 {
        return (1, 1);
    }
    let mut magnitude = 1u64;
    loop {
        for m in [1u64, 2, 5] {
            let step = m.saturating_mul(magnitude);
            let steps = max.div_ceil(step);
            if steps <= 5 {
                return (steps.saturating_mul(step), step);
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

/// One series of a column chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<u64>,
}

/// Grouped columns, one group per label (an hour or a day), with a legend.
pub fn columns(id: &str, labels: &[String], series: &[Series], fmt: fn(u64) -> String) -> String {
    let (left, right, top, bottom) = (70.0, 10.0, 30.0, 40.0);
    let w = WIDTH as f64 - left - right;
    let h = COLUMN_HEIGHT as f64 - top - bottom;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0);
    let (ymax, step) = nice_scale(max);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg id="{id}" class="chart" viewBox="0 0 {WIDTH} {COLUMN_HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">"#
    );
    // Grid lines and y labels.
    let mut y = 0;
    while y <= ymax {
        let py = top + h - h * y as f64 / ymax as f64;
        let _ = write!(
            out,
            r#"<line class="grid" x1="{left}" x2="{x2}" y1="{py:.1}" y2="{py:.1}"/><text class="axis" x="{lx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
            x2 = left + w,
            lx = left - 8.0,
            ty = py + 4.0,
            label = esc(&fmt(y)),
        );
        y += step;
    }
    // Legend.
    let mut lx = left;
    for s in series {
        let _ = write!(
            out,
            r#"<rect x="{lx}" y="6" width="12" height="12" rx="2" fill="{c}"/><text class="legend" x="{tx}" y="16">{n}</text>"#,
            c = esc(s.color),
            tx = lx + 17.0,
            n = esc(s.name),
        );
        lx += 30.0 + 8.0 * s.name.chars().count() as f64;
    }
    let groups = labels.len().max(1);
    let slot = w / groups as f64;
    let gap = (slot * 0.2).min(12.0);
    let bar = (slot - gap) / series.len().max(1) as f64;
    let every = labels.len().div_ceil(MAX_X_LABELS).max(1);
    for (g, label) in labels.iter().enumerate() {
        let x0 = left + slot * g as f64 + gap / 2.0;
        for (k, s) in series.iter().enumerate() {
            let v = s.values.get(g).copied().unwrap_or(0);
            let bh = h * v as f64 / ymax as f64;
            let _ = write!(
                out,
                r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{c}"><title>{l}: {v} {n}</title></rect>"#,
                x = x0 + bar * k as f64,
                y = top + h - bh,
                bw = (bar - 1.0).max(0.5),
                c = esc(s.color),
                l = esc(label),
                v = esc(&fmt(v)),
                n = esc(s.name),
            );
        }
        if g % every == 0 {
            let _ = write!(
                out,
                r#"<text class="axis" x="{x:.1}" y="{y}" text-anchor="middle">{l}</text>"#,
                x = x0 + (slot - gap) / 2.0,
                y = top + h + 18.0,
                l = esc(label),
            );
        }
    }
    let _ = write!(
        out,
        r#"<line class="base" x1="{left}" x2="{x2}" y1="{y}" y2="{y}"/></svg>"#,
        x2 = left + w,
        y = top + h,
    );
    out
}

/// Horizontal bars, one row per item, largest first as given: label, bar, number.
pub fn bars(id: &str, items: &[(String, u64)], color: &str) -> String {
    let (label_w, num_w) = (200.0, 56.0);
    let w = BARS_WIDTH as f64 - label_w - num_w;
    let height = ROW_HEIGHT * items.len().max(1) as u32 + 4;
    let max = items.iter().map(|i| i.1).max().unwrap_or(0).max(1);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg id="{id}" class="chart" viewBox="0 0 {BARS_WIDTH} {height}" role="img" xmlns="http://www.w3.org/2000/svg">"#
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = 2.0 + (ROW_HEIGHT * i as u32) as f64;
        let bw = (w * *v as f64 / max as f64).max(if *v > 0 { 2.0 } else { 0.0 });
        let _ = write!(
            out,
            r#"<text class="label" x="{lx}" y="{ty:.1}" text-anchor="end">{short}<title>{full}</title></text><rect class="track" x="{label_w}" y="{ry:.1}" width="{w}" height="{rh}" rx="3"/><rect class="bar" x="{label_w}" y="{ry:.1}" width="{bw:.1}" height="{rh}" rx="3" fill="{c}"><title>{full}: {v}</title></rect><text class="num" x="{nx}" y="{ty:.1}">{v}</text>"#,
            lx = label_w - 10.0,
            ty = y + ROW_HEIGHT as f64 / 2.0 + 4.0,
            short = esc(&shorten(label)),
            full = esc(label),
            ry = y + 4.0,
            rh = ROW_HEIGHT - 8,
            c = esc(color),
            nx = label_w + w + 8.0,
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round() {
        assert_eq!(nice_scale(0), (1, 1));
        assert_eq!(nice_scale(3), (3, 1));
        assert_eq!(nice_scale(7), (8, 2));
        assert_eq!(nice_scale(42), (50, 10));
        assert_eq!(nice_scale(1234), (1500, 500));
        assert!(nice_scale(u64::MAX / 2).0 >= u64::MAX / 2);
        assert!(nice_scale(u64::MAX).0 == u64::MAX);
    }

    #[test]
    fn text_is_escaped() {
        let svg = bars("x", &[("<script>alert(1)</script>".into(), 3)], "#123");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert_eq!(esc("a\"b'c&\u{1b}"), "a&quot;b&#39;c&amp;\u{fffd}");
    }

    #[test]
    fn one_rect_per_value() {
        let labels = vec!["01".to_string(), "02".to_string()];
        let svg = columns(
            "c",
            &labels,
            &[
                Series {
                    name: "in",
                    color: "#00f",
                    values: vec![1, 2],
                },
                Series {
                    name: "out",
                    color: "#0f0",
                    values: vec![0, 5],
                },
            ],
            |v| v.to_string(),
        );
        assert_eq!(svg.matches(r#"class="bar""#).count(), 4);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
