//! postern-user — manage virtual domains, mailboxes, passwords, quotas and aliases.
//!
//! Usage: `postern-user [--owner NAME] domain add DOMAIN [--postmaster ADDRESS]`,
//! `domain del DOMAIN`, `domain list`, `add ADDRESS [--quota BYTES] [--reuse]`,
//! `passwd ADDRESS`, `del ADDRESS` (moves the mailbox to users/DOMAIN/.deleted/),
//! `list [DOMAIN]`, `quota ADDRESS BYTES`, `alias add ADDRESS TARGET...`,
//! `alias del ADDRESS`, `alias list`, `compile`.
//!
//! Edits `$POSTERN_HOME/control/{domains,users,aliases}` and recompiles the cdbs.
//! Passwords are read from standard input only. Exit 0 done, 100 refused or bad usage,
//! 111 temporary trouble. See docs/postern-user.md.

fn main() {
    postern_common::exit::run(
        postern_mailstore::usercmd::PROG,
        postern_mailstore::usercmd::main,
    )
}
