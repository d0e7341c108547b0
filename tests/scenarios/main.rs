//! Whole-chain scenarios: instances made by `posternctl init` and run under
//! `postern-svscan`, from the binaries the workspace built.

mod dkim_submission;
mod dovecot_imap;
mod gateway;
mod implicit_tls;
mod install;
mod instance;
mod local_workers;
mod mail_flow;
mod pop3_service;
mod pregreet;
mod quickstart;
mod quickstart_rerun;
mod reinstall;
mod smtputf8;
mod supervised_logging;
mod support;
