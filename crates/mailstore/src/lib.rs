//! Virtual domains and users, passwords, Maildir and quotas: the mail store, and the two
//! programs that manage it and check logins against it.
//!
//! - [`address`]: checked, lower-cased addresses and domain names.
//! - [`userdb`]: `control/domains`, `control/users`, `control/aliases`, their cdbs, and
//!   the lookups other programs make ([`lookup_user`], [`resolve_alias`],
//!   [`is_hosted_domain`], [`is_valid_recipient`], [`compile_all`]).
//! - [`password`]: argon2id hashing and the password policy; [`popularity`]: the
//!   "too popular on this server" check, kept as keyed hash counts.
//! - [`maildir`]: mailbox creation and Maildir++ quotas ([`check_quota`],
//!   [`record_delivery`]).
//! - [`owner`]: which account owns the mailboxes.
//! - [`authfail`]: the failed-login table that slows down guessing.
//! - [`relayrecipients`]: who exists behind this gateway (`control/relayrecipients`).
//! - [`verify`]: the domains whose recipients are verified by asking the next hop
//!   (`control/verifyrecipients`) and its settings; [`verifycache`]: the answers kept
//!   under `run/verify/`, and the one-probe-per-address lock.
//! - [`checkpassword`]: `postern-checkpassword`; [`usercmd`]: `postern-user`.
#![forbid(unsafe_code)]

pub mod address;
pub mod authfail;
pub mod checkpassword;
pub mod maildir;
pub mod owner;
pub mod password;
pub mod popularity;
pub mod relayrecipients;
pub mod usercmd;
pub mod userdb;
pub mod verify;
pub mod verifycache;

pub use maildir::{check_quota, record_delivery, QuotaCheck};
pub use userdb::{
    compile_all, is_hosted_domain, is_valid_recipient, lookup_user, resolve_alias, User,
};
