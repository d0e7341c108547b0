//! postern-remote — deliver one message to one domain's recipients by SMTP.
//!
//! Usage: `postern-remote DOMAIN SENDER RECIPIENT...` with the message on fd 0. Routes
//! by `control/smtproutes`, else MX then A/AAAA; one transaction for all recipients;
//! opportunistic STARTTLS. Writes qmail-remote's NUL-terminated `r`/`h`/`s` and `K`/`Z`/`D`
//! records on fd 1 and exits 0; exits 100 on bad usage. See docs/postern-remote.md.

fn main() {
    postern_common::exit::run("postern-remote", postern_delivery::remote::main)
}
