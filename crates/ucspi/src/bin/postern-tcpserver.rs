//! postern-tcpserver — accept TCP connections and run a program for each.
//!
//! Usage: `postern-tcpserver [-1UXpPhHrRoOdDqQv] [-c limit] [-C perip] [-x rules.cdb]
//! [-B banner] [-g gid] [-u uid] [-b backlog] [-l localname] [-t timeout] host port program...`
//!
//! Binds host:port, drops to uid/gid, and for each connection checks the rules in
//! rules.cdb and runs program with fd 0 = fd 1 = the socket and the UCSPI environment.
//! At most `limit` connections at once (others wait), at most `perip` per address.
//! Exit 100 bad usage, 111 unable to bind; SIGTERM exits 0. See docs/postern-tcpserver.md.

fn main() {
    postern_common::exit::run(
        postern_ucspi::tcpserver::PROG,
        postern_ucspi::tcpserver::main,
    )
}
