//! posternctl's end-to-end tests: the real binary, in temporary instances.

mod report;
