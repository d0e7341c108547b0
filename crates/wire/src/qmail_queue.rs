//! (being moved here; see lib.rs)
