//! postern-envdir: see docs/postern-envdir.md.
//!
//! Usage: `postern-envdir dir child`

fn main() {
    postern_common::exit::run("postern-envdir", postern_supervision::envdir::main)
}
