//! postern: a secure mail system built the qmail way.
//!
//! This root package holds no code of its own: the programs live in the family crates
//! under `crates/` (see `docs/architecture.md`). It exists to own the whole-chain
//! scenario tests in `tests/`, which start real instances from the built binaries.
#![forbid(unsafe_code)]
