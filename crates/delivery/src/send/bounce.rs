//! Bounce messages in qmail's QSBMF shape, so the parsers that know
//! qmail's bounces read ours: the `Hi. This is the postern-send program at HOST.` intro,
//! one `<addr>:` paragraph per failed recipient, the `--- Below this line is` divider,
//! then `Return-Path:` and a copy of the message (its whole header, and the body up to
//! [`MAX_COPY`] bytes).
//!
//! Who gets what:
//! - sender not empty: a bounce, envelope sender `<>`, to the sender;
//! - sender `<>` (a bounce failed): a double bounce, envelope sender `#@[]`, to
//!   `control/doublebounceto`;
//! - sender `#@[]` (a double bounce failed): dropped and logged (a triple bounce).

use crate::local::header_values;

/// Most message bytes copied into a bounce (header always whole).
pub const MAX_COPY: usize = 256 * 1024;
/// The envelope sender of double bounces, which are never bounced again.
pub const DOUBLE_BOUNCE_SENDER: &str = "#@[]";

/// What to do with the failures of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Queue a bounce: envelope sender, recipient, and whether it is a double bounce.
    Send {
        sender: String,
        to: String,
        double: bool,
    },
    /// Drop: a failed double bounce.
    Drop,
}

pub fn plan(original_sender: &str, doublebounceto: &str) -> Plan {
    match original_sender {
        DOUBLE_BOUNCE_SENDER => Plan::Drop,
        "" => Plan::Send {
            sender: DOUBLE_BOUNCE_SENDER.into(),
            to: doublebounceto.into(),
            double: true,
        },
        s => Plan::Send {
            sender: String::new(),
            to: s.into(),
            double: false,
        },
    }
}

/// One failure paragraph: `<addr>:` and the text, a blank line inside the text broken
/// with `/` (qmail), ending with a blank line.
fn paragraph(out: &mut String, addr: &str, text: &str) {
    // An envelope address (a setuid caller's can hold any byte) never starts a line of
    // its own: it could fake a paragraph, the divider or a header of the copy.
    out.push('<');
    out.push_str(&one_line(addr));
    out.push_str(">:\n");
    let mut t = text.trim_end_matches('\n').replace("\n\n", "\n/");
    while t.contains("\n\n") {
        t = t.replace("\n\n", "\n/");
    }
    out.push_str(&t);
    out.push_str("\n\n");
}

/// The header facts of one bounce.
#[derive(Debug, Clone)]
pub struct Head<'a> {
    /// This host (`me`), named in the intro.
    pub host: &'a str,
    /// The `From:` address.
    pub from: &'a str,
    /// The recipient of the bounce.
    pub to: &'a str,
    pub double: bool,
    /// The failed message's envelope sender.
    pub original_sender: &'a str,
    /// RFC 5322 date.
    pub date: &'a str,
}

/// The message text of a bounce.
pub fn compose(h: &Head, failures: &[(String, String)], message: &[u8]) -> Vec<u8> {
    let Head {
        host,
        from,
        to,
        double,
        original_sender,
        date,
    } = *h;
    // Addresses come from envelopes: never let one start a new header line.
    let (to, original_sender) = (one_line(to), one_line(original_sender));
    let mut t = String::new();
    t.push_str(&format!(
        "Date: {date}\nFrom: {from}\nTo: {to}\nSubject: failure notice\n\n"
    ));
    t.push_str(&format!(
        "Hi. This is the postern-send program at {host}.\n"
    ));
    if double {
        t.push_str(
            "I tried to deliver a bounce message to this address, but the bounce bounced!\n\n",
        );
    } else {
        t.push_str(
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n",
        );
        t.push_str("This is a permanent error; I've given up. Sorry it didn't work out.\n\n");
    }
    for (addr, text) in failures {
        paragraph(&mut t, addr, text);
    }
    t.push_str(if double {
        "--- Below this line is the original bounce.\n\n"
    } else {
        "--- Below this line is a copy of the message.\n\n"
    });
    t.push_str(&format!("Return-Path: <{original_sender}>\n"));
    let mut out = t.into_bytes();
    let header_end = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    let keep = header_end.max(MAX_COPY.min(message.len()));
    out.extend_from_slice(&message[..keep]);
    if keep < message.len() {
        out.extend_from_slice(b"\n[--- the rest of the message was cut off by postern-send ---]\n");
    } else if !message.is_empty() && !message.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], "_")
}

/// The Subject of a message (for the priority lane), from its first bytes.
pub fn subject(head: &[u8]) -> Option<String> {
    header_values(head, "subject").into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_gets_the_bounce() {
        assert_eq!(
            plan("a@x.test", "pm@me.test"),
            Plan::Send {
                sender: "".into(),
                to: "a@x.test".into(),
                double: false
            }
        );
        assert_eq!(
            plan("", "pm@me.test"),
            Plan::Send {
                sender: "#@[]".into(),
                to: "pm@me.test".into(),
                double: true
            }
        );
        assert_eq!(plan("#@[]", "pm@me.test"), Plan::Drop);
    }

    #[test]
    fn qsbmf_shape() {
        let head = Head {
            host: "me.test",
            from: "MAILER-DAEMON@me.test",
            to: "a@x.test",
            double: false,
            original_sender: "a@x.test",
            date: "Thu, 1 Jan 2026 00:00:00 +0000",
        };
        let b = compose(
            &head,
            &[(
                "b@y.test".into(),
                "Remote host said: 550 no\n\nsecond".into(),
            )],
            b"Subject: hi\n\nbody\n",
        );
        let text = String::from_utf8(b).unwrap();
        assert!(text.contains("\n\nHi. This is the postern-send program at me.test.\nI'm afraid"));
        assert!(text.contains("\n<b@y.test>:\nRemote host said: 550 no\n/second\n\n--- Below this line is a copy of the message.\n\nReturn-Path: <a@x.test>\nSubject: hi\n\nbody\n"), "{text}");
    }

    #[test]
    fn envelope_addresses_cannot_add_header_lines() {
        let head = Head {
            host: "h",
            from: "f",
            to: "a@b\nBcc: x@y",
            double: false,
            original_sender: "a@b\nBcc: x@y",
            date: "d",
        };
        let text = String::from_utf8(compose(&head, &[], b"")).unwrap();
        assert!(text.contains("To: a@b_Bcc: x@y\n"), "{text}");
        assert!(!text.contains("\nBcc:"), "{text}");
    }

    /// Regression: the failed addresses went into the body raw, so one with a line feed
    /// could forge bounce text (a fake divider and a fake copy of the message).
    #[test]
    fn bounce_text_not_sanitised_failed_address_with_line_feeds() {
        let head = Head {
            host: "h",
            from: "f",
            to: "a@x.test",
            double: false,
            original_sender: "a@x.test",
            date: "d",
        };
        let evil = "b@y.test>:\nok\n\n--- Below this line is a copy of the message.\n\nFrom: boss@x.test\r\n<c@y.test";
        let text = String::from_utf8(compose(
            &head,
            &[(evil.into(), "Sorry.".into())],
            b"Subject: hi\n\nbody\n",
        ))
        .unwrap();
        assert_eq!(text.matches("\n--- Below this line").count(), 1, "{text}");
        assert!(!text.contains("\nFrom: boss"), "{text}");
        assert!(!text.contains('\r'), "{text}");
        assert!(
            text.contains("\n<b@y.test>:_ok__--- Below this line is a copy of the message.__From: boss@x.test__<c@y.test>:\nSorry.\n"),
            "{text}"
        );
    }

    #[test]
    fn long_bodies_are_cut_but_headers_kept() {
        let mut msg = b"Subject: big\n\n".to_vec();
        msg.extend(std::iter::repeat_n(b'x', MAX_COPY * 2));
        let head = Head {
            host: "h",
            from: "f",
            to: "t",
            double: true,
            original_sender: "",
            date: "d",
        };
        let b = compose(&head, &[], &msg);
        assert!(b.len() < MAX_COPY + 1000);
        assert!(String::from_utf8_lossy(&b).contains("--- Below this line is the original bounce."));
    }
}
