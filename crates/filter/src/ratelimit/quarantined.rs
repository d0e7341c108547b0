//! postern-scan's refusals as alert events: its `event=quarantine` line in the smtpd and
//! submission logs (docs/postern-scan.md) becomes one event of the alert digest, so a
//! spam or virus storm costs postmaster one mail per `alertinterval`, not one per
//! message. The event says what the log line says — reason, rule, detail, client,
//! sender, recipients — and where the copy is; `posternctl quarantine show ID` shows its
//! headers, `release ID` lets it through.

use postern_common::logline::{get, parse, printable};

/// The alert `(subject, text)` for a log line, or `None` when it is not a quarantine.
pub fn alert(line: &str) -> Option<(String, String)> {
    let fields = parse(line);
    if get(&fields, "event") != Some("quarantine") {
        return None;
    }
    let field = |key: &str| printable(get(&fields, key).unwrap_or("-"));
    let reason = field("reason");
    let copy = get(&fields, "copy").unwrap_or("");
    let id = copy.rsplit('/').next().unwrap_or("");
    let mut text = format!(
        "postern-scan refused a message before it was accepted (the client got 554) and \
         kept a copy.\n\n\
         Reason:     {reason}\nRule:       {}\nDetail:     {}\nClient IP:  {}\nSender:     {}\n\
         Recipients: {}\nCopy:       {}\n",
        field("rule"),
        field("detail"),
        field("ip"),
        field("from"),
        field("rcpts"),
        printable(copy),
    );
    if !id.is_empty() {
        text.push_str(&format!(
            "\nLook at it with `posternctl quarantine show {0}`; let it through with\n\
             `posternctl quarantine release {0}`.\n",
            printable(id)
        ));
    }
    Some((format!("[postern] message quarantined: {reason}"), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarantine_line_is_an_event_and_others_are_not() {
        let line = "@4000000065a1b2c30a1b2c3d event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=2 reason=attachment rule=\".exe (filter.rules:19)\" detail=\"Executable File (.exe): invoice.pdf.exe\" copy=quarantine/new/1765100000.M1P2Q0.mx";
        let (subject, text) = alert(line).unwrap();
        assert_eq!(subject, "[postern] message quarantined: attachment");
        assert!(
            text.contains("Rule:       .exe (filter.rules:19)\n"),
            "{text}"
        );
        assert!(text.contains("invoice.pdf.exe"), "{text}");
        assert!(text.contains("Sender:     <x@evil.test>\n"), "{text}");
        assert!(
            text.contains("posternctl quarantine release 1765100000.M1P2Q0.mx"),
            "{text}"
        );
        assert!(alert("event=accept ip=192.0.2.1 from=<a@b> rcpts=1").is_none());
        assert!(alert("event=spam score=3").is_none());
        // A hostile value cannot put a line of its own in the mail.
        let (_, text) = alert("event=quarantine reason=virus detail=\"a\\x0aX-Evil: 1\"").unwrap();
        assert!(!text.contains("\nX-Evil"), "{text}");
    }
}
