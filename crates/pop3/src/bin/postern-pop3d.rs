//! postern-pop3d — serve one Maildir over POP3 after login, qmail-pop3d style.
//!
//! Usage: `postern-pop3d [-t SECONDS] [MAILDIR]` (default `$MAILDIR`, else `./Maildir`)
//!
//! Run by a checkpassword program on behalf of postern-popup; never as root.
//! See docs/postern-pop3d.md.

fn main() {
    postern_common::exit::run("postern-pop3d", postern_pop3::pop3d::main)
}
