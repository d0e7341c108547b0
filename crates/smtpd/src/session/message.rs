//! DATA: start a queue run, stream the message into it with a Received header first,
//! and answer with what the queue said (or why the message was refused: size, hops,
//! line length).

use super::{EmitTo, Flow, Session};
use crate::data::{self, Data};
use crate::line::{Input, LineError, MAX_TEXT};
use crate::queue::Outcome;
use crate::{queue, received};
use postern_common::logline::LogLine;
use std::io::{self, Write};

impl<R: Input, W: Write> Session<'_, R, W> {
    pub(super) fn data(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if !arg.is_empty() {
            return self.error("501 5.5.4 DATA takes no argument");
        }
        let Some(sender) = self.sender.clone() else {
            return self.error("503 5.5.1 MAIL first");
        };
        if self.rcpts.is_empty() {
            return self.error("554 5.5.1 no valid recipients");
        }
        let priority = self.peer.relayclient || self.auth_user.is_some();
        let mut job = match self.outside.queue(priority, self.auth_user.as_deref()) {
            Ok(j) => j,
            Err(e) => {
                let reply = queue::start_failure(&e);
                self.reset();
                return self.temp_failure(&reply, &e);
            }
        };
        self.reply("354 go ahead, end with <CRLF>.<CRLF>")?;
        self.out.flush()?;
        let header = received::header(&received::Facts {
            helo: self.helo.as_deref().unwrap_or("unknown"),
            remote_host: self.peer.host.as_deref(),
            remote_ip: &self.peer.ip,
            me: &self.cfg.me,
            esmtp: self.esmtp,
            utf8: self.smtputf8,
            tls: self
                .tls
                .as_ref()
                .map(|t| (t.version.as_str(), t.cipher.as_str())),
            authenticated: self.auth_user.is_some(),
            date: &received::now_rfc5322(),
        });
        let mut broken = job.write(header.as_bytes()).is_err();
        let mut state = Data::new(self.cfg.databytes);
        // The client owes us the message now: every wait counts against the rate.
        self.input.set_bulk(true);
        loop {
            match self.input.read_line(&mut self.line, MAX_TEXT) {
                Ok(()) => match state.line(&self.line) {
                    data::Line::End => break,
                    data::Line::Text(text) => {
                        if !broken && !state.doomed() {
                            let mut buf = Vec::with_capacity(text.len() + 1);
                            buf.extend_from_slice(text);
                            buf.push(b'\n');
                            broken = job.write(&buf).is_err();
                        }
                    }
                },
                Err(LineError::TooLong) => state.long_line(),
                Err(e) => {
                    self.input.set_bulk(false);
                    job.abort();
                    let flow = self.read_failed(e, "message data")?;
                    self.reset();
                    return Ok(flow);
                }
            }
        }
        self.input.set_bulk(false);
        let rcpts = std::mem::take(&mut self.rcpts);
        let outcome = if state.too_big() {
            job.abort();
            self.reject("size", None)
                .kv("size", state.size)
                .emit_to(self.outside);
            "552 5.3.4 message too big".to_string()
        } else if state.too_many_hops() {
            job.abort();
            self.reject("hops", None)
                .kv("hops", state.hops)
                .emit_to(self.outside);
            "554 5.4.6 too many hops, this message is looping".to_string()
        } else if state.too_long {
            job.abort();
            self.reject("linelength", None).emit_to(self.outside);
            "552 5.3.4 a line of the message is longer than 1000 octets".to_string()
        } else {
            match job.finish(&sender, &rcpts) {
                Outcome::Queued { pid } => {
                    self.messages += 1;
                    let line = LogLine::event("accept")
                        .kv("ip", &self.peer.ip)
                        .kv("helo", self.helo.as_deref().unwrap_or(""))
                        .kv("from", format!("<{sender}>"))
                        .kv("rcpts", rcpts.len())
                        .kv("size", state.size)
                        .kv("tls", self.tls_word())
                        .kv("auth", self.auth_user.as_deref().unwrap_or("-"))
                        .kv("qp", pid);
                    self.outside.log(line);
                    format!("250 2.0.0 ok: queued as qp {pid}")
                }
                Outcome::Refused { reply, code } => {
                    let code = code.map(|c| c.to_string()).unwrap_or_else(|| "none".into());
                    // The text after the reply code and the enhanced status code.
                    let detail = reply.splitn(3, ' ').nth(2).unwrap_or("");
                    self.reject("queue", None)
                        .kv("code", code)
                        .kv("detail", detail)
                        .emit_to(self.outside);
                    reply
                }
            }
        };
        self.reset();
        self.reply(&outcome).map(|_| Flow::Continue)
    }
}
