//! Access rules in the tcprules format: the source syntax and its
//! compiler ([`source`]), and the lookup tcpserver and tcprulescheck do ([`lookup`]).
//!
//! The cdb encoding is classic: key = the address text, value = NUL-terminated entries,
//! `D` for deny and `+VAR=value` per variable. postern adds CIDR keys, stored as the
//! normalised text `NET/LEN` (`10.0.0.0/8`, `2001:db8::/32`); the lookup tries the
//! client's address masked to every length, longest first, so classic tcpserver simply
//! never finds them.

pub mod lookup;
pub mod source;

pub use lookup::{lookup, Client, Decision};
pub use source::{compile, parse_line, Rule};
