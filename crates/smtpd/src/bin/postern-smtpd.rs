//! postern-smtpd: the SMTP server, one connection on fds 0 and 1.
//!
//! Usage: `postern-smtpd [-s] [CHECKPASSWORD SUBPROGRAM...]`, normally under
//! `postern-tcpserver … postern-rblsmtpd … postern-smtpd postern-checkpassword true`.
//! `-s` (or `SUBMISSION=1`): submission mode, AUTH required before MAIL.
//! See docs/postern-smtpd.md.
#![forbid(unsafe_code)]

fn main() {
    postern_common::exit::run(postern_smtpd::PROG, postern_smtpd::main)
}
