//! postern-setuidgid: see docs/postern-setuidgid.md.
//!
//! Usage: `postern-setuidgid account child`

fn main() {
    postern_common::exit::run("postern-setuidgid", postern_supervision::setuidgid::main)
}
