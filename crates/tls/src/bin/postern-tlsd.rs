//! postern-tlsd — run a protocol server with STARTTLS, keeping TLS and the key outside it.
//!
//! Usage: `postern-tlsd [-c CERT] [-k KEY] [-u UID] [-g GID] PROGRAM...`
//!
//! Loads `$POSTERN_HOME/control/tls/{cert,key}.pem`, drops root, runs PROGRAM on pipes
//! with `POSTERN_TLS_FD` set, relays cleartext until PROGRAM asks for TLS, then TLS.
//! Without a certificate it just runs PROGRAM. See docs/postern-tlsd.md.

fn main() {
    postern_common::exit::run("postern-tlsd", postern_tls::tlsd::main)
}
