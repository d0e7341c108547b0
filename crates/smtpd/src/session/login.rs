//! STARTTLS (the handover to postern-tlsd) and AUTH PLAIN/LOGIN (the SASL exchange and
//! the checkpassword verdict).

use super::{account_name, EmitTo, Flow, Session};
use crate::auth::{self, Mechanism};
use crate::line::Input;
use postern_common::logline::LogLine;
use std::io::{self, Write};

impl<R: Input, W: Write> Session<'_, R, W> {
    pub(super) fn starttls(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if !self.outside.tls_configured() {
            return self.error("502 5.5.1 STARTTLS not available");
        }
        if self.tls.is_some() {
            return self.error("503 5.5.1 TLS already active");
        }
        if !arg.is_empty() {
            return self.error("501 5.5.4 STARTTLS takes no argument");
        }
        self.out.flush()?;
        // Pipelined bytes after STARTTLS are an injection attempt: never executed.
        let buffered = self.input.discard_buffer();
        let drained = match self.outside.tls_request() {
            Ok(n) => n,
            Err(e) => {
                return self.temp_failure("454 4.7.0 TLS not available due to temporary reason", &e)
            }
        };
        self.reply("220 2.0.0 Ready to start TLS")?;
        self.out.flush()?;
        let discarded = buffered + drained;
        match self.outside.tls_start() {
            Ok(Ok(tls)) => {
                let line = LogLine::event("starttls")
                    .kv("ip", &self.peer.ip)
                    .kv("version", &tls.version)
                    .kv("cipher", &tls.cipher)
                    .kv("discarded", discarded);
                self.outside.log(line);
                // RFC 3207 §4.2: forget everything learnt before the handshake.
                self.reset();
                self.helo = None;
                self.esmtp = false;
                self.auth_user = None;
                self.tls = Some(tls);
                Ok(Flow::Continue)
            }
            Ok(Err(reason)) => {
                self.reject("tls", None)
                    .kv("detail", reason)
                    .kv("discarded", discarded)
                    .emit_to(self.outside);
                Ok(Flow::Close("tls"))
            }
            Err(e) => {
                self.reject("tls", None)
                    .kv("detail", e.msg)
                    .emit_to(self.outside);
                Ok(Flow::Close("tls"))
            }
        }
    }

    /// Read one line of an AUTH exchange and decode it. `Err(flow)` when the exchange
    /// is over (cancelled, malformed, connection trouble); the reply is already sent.
    fn auth_response(&mut self) -> io::Result<std::result::Result<Vec<u8>, Flow>> {
        self.out.flush()?;
        let mut line = Vec::new();
        if let Err(e) = self.input.read_line(&mut line, auth::MAX_AUTH_LINE) {
            return self.read_failed(e, "AUTH").map(Err);
        }
        if line == b"*" {
            self.reply("501 5.0.0 AUTH exchange cancelled")?;
            return Ok(Err(Flow::Continue));
        }
        match auth::decode(&line) {
            Some(d) => Ok(Ok(d)),
            None => self
                .error("501 5.5.2 cannot decode the AUTH response")
                .map(Err),
        }
    }

    pub(super) fn auth(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if !self.outside.auth_configured() {
            return self.error("502 5.5.1 AUTH not available");
        }
        if !self.esmtp {
            return self.error("503 5.5.1 send EHLO first");
        }
        if self.auth_user.is_some() {
            return self.error("503 5.5.1 already authenticated");
        }
        if self.sender.is_some() {
            return self.error("503 5.5.1 no AUTH during a mail transaction");
        }
        if !self.auth_offered() {
            return self
                .error("538 5.7.11 encryption required for requested authentication mechanism");
        }
        let (mech, initial) = match arg.iter().position(|&b| b == b' ') {
            Some(i) => (&arg[..i], Some(&arg[i + 1..])),
            None => (arg, None),
        };
        let Some(mech) = Mechanism::parse(mech) else {
            return self.error("504 5.5.4 unrecognised authentication type");
        };
        let decoded_initial = match initial {
            None => None,
            Some(text) => match auth::decode(text) {
                Some(d) => Some(d),
                None => return self.error("501 5.5.2 cannot decode the AUTH response"),
            },
        };
        let (user, pass) = match mech {
            Mechanism::Plain => {
                let msg = match decoded_initial {
                    Some(m) => m,
                    None => {
                        self.reply("334 ")?;
                        match self.auth_response()? {
                            Ok(m) => m,
                            Err(flow) => return Ok(flow),
                        }
                    }
                };
                match auth::parse_plain(&msg) {
                    Some(up) => up,
                    None => return self.error("501 5.5.2 malformed PLAIN response"),
                }
            }
            Mechanism::Login => {
                let user = match decoded_initial {
                    Some(u) => u,
                    None => {
                        self.reply(auth::PROMPT_USER)?;
                        match self.auth_response()? {
                            Ok(u) => u,
                            Err(flow) => return Ok(flow),
                        }
                    }
                };
                self.reply(auth::PROMPT_PASS)?;
                let pass = match self.auth_response()? {
                    Ok(p) => p,
                    Err(flow) => return Ok(flow),
                };
                (user, pass)
            }
        };
        if !auth::acceptable_login(&user) || pass.contains(&0) {
            return self.error("501 5.5.2 malformed login name or password");
        }
        let login = String::from_utf8_lossy(&user).into_owned();
        match self.outside.check_password(&user, &pass) {
            Ok(true) => {
                // The user database lower-cases the whole address (postern-mailstore), so
                // `Alice@…` and `alice@…` are one account: from here on it has one name,
                // for the rate-limit blocks, the logs, AUTHUSER and the sender-login match.
                let login = account_name(&login);
                let line = LogLine::event("auth")
                    .kv("ip", &self.peer.ip)
                    .kv("user", &login)
                    .kv("mech", mech.name())
                    .kv("result", "ok")
                    .kv("tls", self.tls_word());
                self.outside.log(line);
                self.auth_user = Some(login);
                self.reply("235 2.7.0 authentication successful")
                    .map(|_| Flow::Continue)
            }
            Ok(false) => {
                self.auth_failures += 1;
                self.reject("authfail", None)
                    .kv("user", &login)
                    .kv("mech", mech.name())
                    .emit_to(self.outside);
                self.out.flush()?;
                self.outside.sleep(self.cfg.auth_fail_delay);
                if self.auth_failures >= auth::MAX_FAILURES {
                    self.reply("421 4.7.0 too many authentication failures, closing connection")?;
                    return Ok(Flow::Close("authfail"));
                }
                self.reply("535 5.7.8 authentication credentials invalid")
                    .map(|_| Flow::Continue)
            }
            Err(e) => self.temp_failure("454 4.7.0 temporary authentication failure", &e),
        }
    }
}
