//! postern-svok — is a supervise running for a service?
//!
//! Usage: `postern-svok dir`
//!
//! Exits 0 if a supervise runs for `dir`, 100 if not (or on bad usage), 111 on trouble.
//! See docs/postern-svok.md.

fn main() {
    postern_common::exit::run(
        postern_supervision::svok::PROG,
        postern_supervision::svok::main,
    )
}
