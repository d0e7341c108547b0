//! `postern-tai64nlocal` — turns leading TAI64N labels into local time
//! (docs/postern-tai64nlocal.md).
//!
//! Usage: `postern-tai64nlocal < in > out`. A line starting with `@` + 24 lowercase hex
//! digits gets `YYYY-MM-DD HH:MM:SS.NNNNNNNNN` in their place; all else is copied as is.
//!
//! Exit codes: 0 at end of input, 100 on bad usage, 111 on a read or write error.

fn main() {
    postern_common::exit::run(
        "postern-tai64nlocal",
        postern_supervision::tai64nlocal::main,
    )
}
