//! Whole-chain scenarios: instances made by `posternctl init` and run under
//! `postern-svscan`, from the binaries the workspace built.

mod instance;
mod supervised_logging;
