//! postern-softlimit: see docs/postern-softlimit.md.
//!
//! Usage: `postern-softlimit [-a allbytes] [-c corebytes] [-d databytes] [-f filebytes] [-l lockbytes] [-m membytes] [-o openfiles] [-p processes] [-r residentbytes] [-s stackbytes] [-t cpusecs] child`

fn main() {
    postern_common::exit::run("postern-softlimit", postern_supervision::softlimit::main)
}
