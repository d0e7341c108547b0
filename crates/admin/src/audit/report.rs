//! The audit's output: one line per item, `PASS|WARN|FAIL  item — detail`, the fix
//! indented on the next line for WARN and FAIL, then a count of each.

use super::{Finding, Status};
use std::io::{self, Write};

/// Print `findings` and the summary line.
pub fn print(out: &mut impl Write, findings: &[Finding]) -> io::Result<()> {
    for f in findings {
        writeln!(
            out,
            "{}  {} — {}",
            f.status.word(),
            f.item,
            clean(&f.detail)
        )?;
        if f.status != Status::Pass && !f.fix.is_empty() {
            writeln!(out, "      fix: {}", clean(&f.fix))?;
        }
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    writeln!(
        out,
        "audit: {} PASS, {} WARN, {} FAIL",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    )?;
    out.flush()
}

/// Text from the outside (a banner, a file name) on one printable line.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_fixes() {
        let findings = vec![
            Finding::pass("open relay", "refused"),
            Finding::fail("banner", "says Postfix\r\n", "edit control/smtpgreeting"),
            Finding::warn("queue", "big", ""),
        ];
        let mut out = Vec::new();
        print(&mut out, &findings).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PASS  open relay — refused\n\
             FAIL  banner — says Postfix??\n      fix: edit control/smtpgreeting\n\
             WARN  queue — big\n\
             audit: 1 PASS, 1 WARN, 1 FAIL\n"
        );
    }
}
