//! postern-checkpassword — check a login against postern's user database, the
//! checkpassword way.
//!
//! Usage: `postern-checkpassword prog [arg...]`, with `user\0password\0timestamp\0` on
//! descriptor 3. On success it sets USER, AUTHUSER, HOME and MAILDIR and execs prog;
//! exit 1 wrong password or unknown user, 2 misuse, 111 temporary trouble.
//! See docs/postern-checkpassword.md.

fn main() {
    postern_common::exit::run(
        postern_mailstore::checkpassword::PROG,
        postern_mailstore::checkpassword::main,
    )
}
