//! The decision: apply the content rules to a message's analysis. Pure — no I/O — so
//! every rule type is unit-tested on its own. The envelope's addresses are bytes; the
//! rules match them as text (a byte that is not UTF-8 reads as U+FFFD).

use crate::scan::mime::Analysis;
use crate::scan::quarantine::Refusal;
use crate::scan::rules::{Field, Rule, RuleKind};
use postern_wire::qmail_queue::Envelope;

/// Facts about the message that are not in its bytes.
pub struct Context<'a> {
    pub envelope: &'a Envelope,
    pub client_ip: &'a str,
    /// `message/partial` allowed (`control/allowpartial`).
    pub allow_partial: bool,
}

/// What the client is told for a message that broke MIME rules (the details, which may
/// quote the message, stay in the log and the quarantine copy).
pub const REPLY_MIME: &str = "malformed or ambiguous MIME structure";
/// What the client is told for `message/partial`.
pub const REPLY_PARTIAL: &str = "message/partial is not accepted";

fn refusal(reason: &str, rule: &Rule, detail: String) -> Refusal {
    // A rule without a description is named by its kind, never by what matched.
    let reply = if rule.description.is_empty() {
        match reason {
            "attachment" => "attachment type not accepted".to_string(),
            _ => "header refused by policy".to_string(),
        }
    } else {
        rule.description.clone()
    };
    Refusal {
        reason: reason.into(),
        rule: format!("{} (filter.rules:{})", rule.pattern, rule.line),
        detail,
        reply,
    }
}

/// The first rule the message breaks, if any.
pub fn check(analysis: &Analysis, rules: &[Rule], cx: &Context) -> Option<Refusal> {
    if let Some(why) = analysis.suspicious.first() {
        return Some(Refusal {
            reason: "mime".into(),
            rule: "structure".into(),
            detail: why.clone(),
            reply: REPLY_MIME.into(),
        });
    }
    if !cx.allow_partial
        && analysis
            .content_types
            .iter()
            .any(|t| t == "message/partial")
    {
        return Some(Refusal {
            reason: "partial".into(),
            rule: "message/partial".into(),
            detail: "message/partial reassembles past any scanner; refused by default".into(),
            reply: REPLY_PARTIAL.into(),
        });
    }
    for rule in rules {
        match &rule.kind {
            RuleKind::Attachment { name, size } => {
                if let Some(a) = analysis
                    .attachments
                    .iter()
                    .find(|a| name.matches(&a.name) && (*size == 0 || a.size == *size))
                {
                    let via = if a.source == "mime" {
                        String::new()
                    } else {
                        format!(" (in {})", a.source)
                    };
                    return Some(refusal(
                        "attachment",
                        rule,
                        format!("{}: {}{via}", rule.description, a.name),
                    ));
                }
            }
            RuleKind::Header { field, value } => {
                let hit = match field {
                    Field::MailFrom => value.matches(&String::from_utf8_lossy(&cx.envelope.sender)),
                    Field::TcpRemoteIp => value.matches(cx.client_ip),
                    Field::ContentType => analysis.content_types.iter().any(|t| value.matches(t)),
                    Field::To => {
                        cx.envelope
                            .recipients
                            .iter()
                            .any(|r| value.matches(&String::from_utf8_lossy(r)))
                            || analysis
                                .headers
                                .iter()
                                .any(|(k, v)| k == "to" && value.matches(v))
                    }
                    Field::Header(name) => analysis
                        .headers
                        .iter()
                        .any(|(k, v)| k == name && value.matches(v)),
                };
                if hit {
                    return Some(refusal("header", rule, rule.description.clone()));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{mime, rules};

    fn run(rules_text: &str, message: &str, sender: &str, ip: &str) -> Option<Refusal> {
        run_bytes(rules_text, message, sender.as_bytes(), ip)
    }

    fn run_bytes(rules_text: &str, message: &str, sender: &[u8], ip: &str) -> Option<Refusal> {
        let rules = rules::parse(rules_text).unwrap();
        let envelope = Envelope::new(sender, &["u@example.test"]);
        let cx = Context {
            envelope: &envelope,
            client_ip: ip,
            allow_partial: false,
        };
        check(&mime::analyse(message.as_bytes()), &rules, &cx)
    }

    const ATTACH: &str = "Subject: hi\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--B\r\nContent-Type: application/octet-stream; name=\"Report.PDF.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAA==\r\n--B--\r\n";

    #[test]
    fn each_rule_type() {
        let r = run(
            ".exe\t0\tExecutable File (.exe)\n",
            ATTACH,
            "a@b.test",
            "192.0.2.1",
        )
        .unwrap();
        assert_eq!(r.reason, "attachment");
        assert_eq!(r.detail, "Executable File (.exe): Report.PDF.exe");
        assert_eq!(r.rule, ".exe (filter.rules:1)");
        assert_eq!(r.reply, "Executable File (.exe)", "the name is not told");
        let r = run(".exe\t0\t\n", ATTACH, "a@b.test", "192.0.2.1").unwrap();
        assert_eq!(r.reply, "attachment type not accepted");
        assert!(
            run("report.pdf.exe\t5\tworm\n", ATTACH, "a@b.test", "192.0.2.1").is_none(),
            "size must match"
        );
        assert!(run("report.pdf.exe\t4\tworm\n", ATTACH, "a@b.test", "192.0.2.1").is_some());
        let plain = "Subject: I love you\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nx\r\n";
        assert_eq!(
            run(
                "love you\tVirus-Subject\tLoveLetter\n",
                plain,
                "a@b.test",
                "1.2.3.4"
            )
            .unwrap()
            .reason,
            "header"
        );
        assert!(run(
            "^spam@\tVirus-MAILFROM\tknown spammer\n",
            plain,
            "spam@evil.test",
            "1.2.3.4"
        )
        .is_some());
        assert!(run(
            "^spam@\tVirus-MAILFROM\tknown spammer\n",
            plain,
            "ok@evil.test",
            "1.2.3.4"
        )
        .is_none());
        assert!(run(
            "^10\\.6\\.\tVirus-TCPREMOTEIP\tbad net\n",
            plain,
            "a@b",
            "10.6.0.9"
        )
        .is_some());
        assert!(run(
            "@example\\.test$\tVirus-To\tno mail for them\n",
            plain,
            "a@b",
            "1.1.1.1"
        )
        .is_some());
        let long_date = format!("Date: {}\r\n\r\nx\r\n", "9".repeat(120));
        assert!(run(
            ".{100,}\tVirus-Date\toverflow\n",
            &long_date,
            "a@b",
            "1.1.1.1"
        )
        .is_some());
        assert!(run(".{100,}\tVirus-Date\toverflow\n", plain, "a@b", "1.1.1.1").is_none());
    }

    #[test]
    fn addresses_that_are_not_utf8_are_matched_as_text() {
        let plain = "Subject: hi\r\n\r\nx\r\n";
        let rule = "^spam@\tVirus-MAILFROM\tknown spammer\n";
        assert!(run_bytes(rule, plain, b"spam@\xfcber.test", "1.1.1.1").is_some());
        assert!(run_bytes(rule, plain, b"\xfcspam@x.test", "1.1.1.1").is_none());
        let rule = "\u{fffd}\tVirus-MAILFROM\tnot UTF-8\n";
        assert!(run_bytes(rule, plain, b"j\xfcrgen@x.test", "1.1.1.1").is_some());
    }

    #[test]
    fn partial_is_refused_by_default_and_structure_first() {
        let partial = "Content-Type: message/partial; id=\"x\"; number=1; total=2\r\n\r\nx\r\n";
        assert_eq!(
            run("", partial, "a@b", "1.1.1.1").unwrap().reason,
            "partial"
        );
        let bad = "Content-Type: text/plain\r\nContent-Type: application/zip\r\n\r\nx\r\n";
        assert_eq!(run("", bad, "a@b", "1.1.1.1").unwrap().reason, "mime");
    }

    #[test]
    fn names_inside_zip_archives() {
        use postern_common::sasl::encode_base64;
        let zip = crate::scan::zipnames::tests::make_zip(&[("docs/invoice.pdf.scr", b"MZ")]);
        let msg = format!(
            "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: application/zip; name=\"invoice.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--B--\r\n",
            encode_base64(&zip)
        );
        let r = run(".scr\t0\tScreen saver\n", &msg, "a@b", "1.1.1.1").unwrap();
        assert_eq!(
            r.detail,
            "Screen saver: invoice.pdf.scr (in zip:invoice.zip)"
        );
    }
}
