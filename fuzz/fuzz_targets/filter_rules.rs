//! `control/filter.rules`, the content policy: `PATTERN<TAB>SIZE-OR-TYPE<TAB>DESCRIPTION`
//! lines, attachment names and extensions, `Virus-HEADER` rules with a regular expression
//! (size-limited) or a `{N,M}` length; then the rules matched against names and values.
//!
//! Checks: every attachment rule matches its own pattern; a bad line is reported by its
//! number; the file with comments and blank lines added parses to the same rules; a
//! pattern matched without a regex (`.{N,M}`, plain text) matches as its regex does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_filter::scan::rules::{self, RuleKind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = rules::parse(&text);
    let commented = format!("# comment\n\n{text}");
    match (&parsed, rules::parse(&commented)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.line + 2, y.line);
                assert_eq!(x.pattern, y.pattern);
                assert_eq!(x.description, y.description);
            }
        }
        (Err(a), Err(b)) => {
            assert!(a.msg.starts_with("control/filter.rules:"), "{}", a.msg);
            assert!(b.msg.starts_with("control/filter.rules:"), "{}", b.msg);
        }
        (a, b) => panic!(
            "comments change the outcome: {:?} vs {:?}",
            a.is_ok(),
            b.is_ok()
        ),
    }
    let Ok(rules) = parsed else { return };
    let probes: Vec<&str> = text.split(['\n', '\t']).take(16).collect();
    for rule in &rules {
        match &rule.kind {
            RuleKind::Attachment { name, .. } => {
                assert!(
                    name.matches(&rule.pattern),
                    "rule {:?} does not match its own pattern",
                    rule.pattern
                );
                for p in &probes {
                    let _ = name.matches(p);
                }
            }
            RuleKind::Header { value, .. } => {
                // A pattern matched without compiling it matches as its regex does.
                let regex = match value {
                    rules::ValueMatch::LineRun { .. } | rules::ValueMatch::Literal(_) => Some(
                        rules::header_regex(&rule.pattern)
                            .expect("the regex of a fast pattern compiles"),
                    ),
                    _ => None,
                };
                for p in &probes {
                    let hit = value.matches(p);
                    if let Some(re) = &regex {
                        assert_eq!(hit, re.is_match(p), "{:?} on {p:?}", rule.pattern);
                    }
                }
            }
        }
    }
});
