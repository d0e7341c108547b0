//! posternctl's end-to-end tests: the real binary, in temporary instances.

mod audit;
mod check;
mod dkim;
mod metrics;
mod report;
