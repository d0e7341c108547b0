//! postern-popup — the POP3 authorization state, qmail-popup style.
//!
//! Usage: `postern-popup [-t SECONDS] HOST CHECKPROGRAM SUBPROGRAM...`
//!
//! Greets with `+OK <pid.time@HOST>`, accepts CAPA, USER/PASS, AUTH PLAIN and (under
//! postern-tlsd) STLS, and runs CHECKPROGRAM SUBPROGRAM... with `user\0pass\0timestamp\0`
//! on fd 3. See docs/postern-popup.md.

fn main() {
    postern_common::exit::run("postern-popup", postern_pop3::popup::main)
}
