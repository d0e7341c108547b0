//! postern-tcprulescheck — show which access rule applies to a client.
//!
//! Usage: `postern-tcprulescheck rules.cdb [address]`
//!
//! Without an address the client is `$TCPREMOTEIP` (with `$TCPREMOTEHOST`,
//! `$TCPREMOTEINFO`). Prints `rule KEY:`, the variables set, and `allow connection` or
//! `deny connection`, as classic tcprulescheck does. See docs/postern-tcprulescheck.md.

fn main() {
    postern_common::exit::run("postern-tcprulescheck", postern_ucspi::tcprulescheck::main)
}
