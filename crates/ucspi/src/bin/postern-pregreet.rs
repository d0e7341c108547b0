//! postern-pregreet — refuse SMTP clients that talk before the greeting.
//!
//! Usage: `postern-pregreet program [arg ...]`
//!
//! Waits `control/pregreetwait` seconds (or `$PREGREETWAIT`) before the server greets;
//! a client that sends anything meanwhile gets 554 and is remembered in run/pregreet/;
//! a quiet one gets the program, exec'd on the same descriptors. Exit 100 bad usage,
//! 111 unable to run the program or a bad control file. See docs/postern-pregreet.md.

fn main() {
    postern_common::exit::run(postern_ucspi::pregreet::PROG, postern_ucspi::pregreet::main)
}
