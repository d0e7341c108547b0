//! The `Received:` header postern-smtpd puts on top of every message.
//!
//! Every value in it that came from the network (the HELO argument, the PTR name) is
//! reduced to a safe alphabet and a bounded length, so a client cannot end the line and
//! forge a header of its own, nor make the header unbounded. The protocol word says what
//! was used, RFC 3848 style: `ESMTP`, with `S` after STARTTLS and `A` after AUTH
//! (`UTF8SMTP` and the same letters for a transaction with SMTPUTF8, RFC 6531 §3.7.3).
//! Lines end in LF: what goes to the queue is in the qmail-queue convention.

/// Longest HELO or host name shown.
pub const MAX_NAME: usize = 100;

/// The facts a Received header records.
pub struct Facts<'a> {
    pub helo: &'a str,
    pub remote_host: Option<&'a str>,
    pub remote_ip: &'a str,
    pub me: &'a str,
    pub esmtp: bool,
    /// The transaction used SMTPUTF8 (RFC 6531 §3.7.3: `UTF8SMTP`, then `S`, `A`).
    pub utf8: bool,
    /// `(version, cipher)` when TLS is active.
    pub tls: Option<(&'a str, &'a str)>,
    pub authenticated: bool,
    /// RFC 5322 date.
    pub date: &'a str,
}

/// Keep letters, digits and `.-_:[]`; anything else becomes `?`; cut at [`MAX_NAME`].
pub fn safe_name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_:[]".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().count() > MAX_NAME {
        out.push_str("...");
    }
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

/// The current time in RFC 5322 form, in UTC.
pub fn now_rfc5322() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

/// The header, LF-terminated, folded over three lines.
pub fn header(f: &Facts) -> String {
    let host = f
        .remote_host
        .map(safe_name)
        .unwrap_or_else(|| "unknown".to_string());
    let mut proto = String::from(match (f.utf8, f.esmtp) {
        (true, _) => "UTF8SMTP",
        (false, true) => "ESMTP",
        (false, false) => "SMTP",
    });
    if f.tls.is_some() {
        proto.push('S');
    }
    if f.authenticated {
        proto.push('A');
    }
    let tls = match f.tls {
        Some((v, c)) => format!(" ({} {})", safe_name(v), safe_name(c)),
        None => String::new(),
    };
    format!(
        "Received: from {} ({} [{}])\n\tby {} with {}{};\n\t{}\n",
        safe_name(f.helo),
        host,
        safe_name(f.remote_ip),
        safe_name(f.me),
        proto,
        tls,
        f.date
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(helo: &'a str, host: Option<&'a str>) -> Facts<'a> {
        Facts {
            helo,
            remote_host: host,
            remote_ip: "192.0.2.7",
            me: "mx.example.test",
            esmtp: true,
            utf8: false,
            tls: None,
            authenticated: false,
            date: "Thu, 26 Nov 2026 06:40:00 +0000",
        }
    }

    #[test]
    fn plain_header() {
        assert_eq!(
            header(&facts("client.test", Some("ptr.test"))),
            "Received: from client.test (ptr.test [192.0.2.7])\n\tby mx.example.test with ESMTP;\n\tThu, 26 Nov 2026 06:40:00 +0000\n"
        );
    }

    #[test]
    fn tls_and_auth_facts() {
        let mut f = facts("c", None);
        f.tls = Some(("TLSv1.3", "TLS13_AES_256_GCM_SHA384"));
        f.authenticated = true;
        let h = header(&f);
        assert!(
            h.contains("with ESMTPSA (TLSv1.3 TLS13_AES_256_GCM_SHA384);"),
            "{h}"
        );
        f.utf8 = true;
        let h = header(&f);
        assert!(
            h.contains("with UTF8SMTPSA (TLSv1.3"),
            "RFC 6531 §3.7.3: {h}"
        );
        assert!(h.contains("(unknown [192.0.2.7])"));
    }

    #[test]
    fn no_header_injection() {
        let h = header(&facts("x\nBcc: victim@x.test", Some("a b\r\nX: y")));
        assert_eq!(h.matches('\n').count(), 3, "{h}");
        assert!(
            h.starts_with("Received: from x?Bcc:?victim?x.test (a?b??X:?y [192.0.2.7])"),
            "{h}"
        );
        let long = "a".repeat(1000);
        assert!(header(&facts(&long, None)).len() < 400);
    }
}
