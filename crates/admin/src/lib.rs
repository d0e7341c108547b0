//! posternctl
