//! posternctl: set up and control a postern instance. See docs/posternctl.md.
//!
//! Usage: `posternctl init [--home DIR] [--domain D] [--bin DIR]`
//! Exit codes: 0 done, 100 bad usage or input, 111 temporary trouble.

fn main() {
    postern_common::exit::run("posternctl", postern_admin::main)
}
