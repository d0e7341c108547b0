//! postern-tcprules — compile tcpserver access rules into a cdb.
//!
//! Usage: `postern-tcprules rules.cdb rules.tmp < rules`
//!
//! Reads the classic ucspi-tcp rules syntax (plus CIDR) on stdin, writes rules.tmp,
//! fsyncs it and renames it onto rules.cdb. A bad line is named and the old cdb stays.
//! Exit 0 done, 100 bad usage or a bad line, 111 I/O trouble. See docs/postern-tcprules.md.

fn main() {
    postern_common::exit::run("postern-tcprules", postern_ucspi::tcprules::main)
}
