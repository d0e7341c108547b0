//! MAIL and RCPT: the sender's parameters and checks (badmailfrom, rate-limit blocks,
//! the sender-login match), then each recipient's (relay, badrcptto, the user database,
//! recipient verification by callout, greylisting) and the slowing of a client that
//! guesses at unknown users.

use super::{first_domain, EmitTo, Flow, Session};
use crate::config;
use crate::greylist;
use crate::line::Input;
use crate::recipients::Verdict;
use crate::relay::{self, Decision};
use postern_common::logline::LogLine;
use postern_common::Result;
use postern_mailstore::verifycache;
use postern_wire::smtp_path::{self, Address, PathError};
use std::io::{self, Write};

impl<R: Input, W: Write> Session<'_, R, W> {
    pub(super) fn mail(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if self.helo.is_none() {
            return self.error("503 5.5.1 send EHLO or HELO first");
        }
        if self.sender.is_some() {
            return self.error("503 5.5.1 nested MAIL command");
        }
        if self.submission && self.auth_user.is_none() {
            self.reject("authrequired", None).emit_to(self.outside);
            return self.error("530 5.7.0 authentication required");
        }
        // SMTPUTF8 (RFC 6531): after EHLO the path may be UTF-8, if MAIL says so.
        let parsed = match smtp_path::parse_path_arg_utf8(arg, "FROM", self.esmtp) {
            Ok(p) => p,
            Err(PathError::Syntax(why)) => {
                return self.error(&format!("501 5.5.4 syntax error in MAIL: {why}"))
            }
            Err(PathError::TooLong(why) | PathError::BadLocal(why)) => {
                return self.error(&format!("501 5.1.7 {why}"))
            }
        };
        for (i, (key, value)) in parsed.params.iter().enumerate() {
            // `SIZE=1 SIZE=2`: which one counts would be a guess; refuse instead.
            if parsed.params[..i].iter().any(|(k, _)| k == key) {
                return self.error("501 5.5.4 MAIL parameter given twice");
            }
            match (key.as_str(), value.as_deref()) {
                ("SIZE", Some(v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                    // Too many digits for 64 bits is simply too big.
                    let n = v.parse::<u64>().unwrap_or(u64::MAX);
                    if self.cfg.databytes > 0 && n > self.cfg.databytes {
                        self.reject("size", None)
                            .kv("size", v)
                            .emit_to(self.outside);
                        return self
                            .reply("552 5.3.4 message size exceeds fixed maximum message size")
                            .map(|_| Flow::Continue);
                    }
                }
                ("BODY", Some(v))
                    if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
                ("AUTH", Some(_)) => {} // RFC 4954 §5: accepted, not trusted
                ("SMTPUTF8", None) => {}
                _ => return self.error("555 5.5.4 unsupported MAIL parameter"),
            }
        }
        let smtputf8 = parsed.params.iter().any(|(k, _)| k == "SMTPUTF8");
        if smtp_path::needs_utf8(arg) && !smtputf8 {
            return self.error("553 5.6.7 a non-ASCII address needs the SMTPUTF8 parameter");
        }
        let sender = parsed
            .address
            .as_ref()
            .map(Address::envelope)
            .unwrap_or_default();
        if !sender.is_empty() && config::listed(&sender, &self.cfg.badmailfrom) {
            self.reject("badmailfrom", None)
                .kv("from", format!("<{sender}>"))
                .emit_to(self.outside);
            return self
                .reply("553 5.7.1 sender refused")
                .map(|_| Flow::Continue);
        }
        if config::rate_limited(
            &self.cfg.ratelimit_blocked,
            &self.peer.ip,
            &sender,
            self.auth_user.as_deref(),
        ) {
            self.reject("ratelimit", None)
                .kv("from", format!("<{sender}>"))
                .emit_to(self.outside);
            return self
                .reply("451 4.7.1 sending rate exceeded, try again later")
                .map(|_| Flow::Continue);
        }
        if let Some(login) = self.auth_user.clone() {
            match self.sender_allowed(&login, &sender) {
                Ok(true) => {}
                Ok(false) => {
                    self.reject("sendermismatch", None)
                        .kv("from", format!("<{sender}>"))
                        .emit_to(self.outside);
                    return self
                        .reply("553 5.7.1 sender address not owned by the authenticated user")
                        .map(|_| Flow::Continue);
                }
                Err(e) => {
                    return self.temp_failure("451 4.3.0 temporary failure checking the sender", &e)
                }
            }
        }
        self.sender = Some(sender);
        self.smtputf8 = smtputf8;
        self.reply("250 2.1.0 ok").map(|_| Flow::Continue)
    }

    /// The sender-login match: own address, `authsenders`, or an alias delivering to us.
    fn sender_allowed(&mut self, login: &str, sender: &str) -> Result<bool> {
        if sender.eq_ignore_ascii_case(login) {
            return Ok(true);
        }
        let login_lc = login.to_ascii_lowercase();
        let sender_lc = sender.to_ascii_lowercase();
        let domain = sender_lc.rsplit_once('@').map(|(_, d)| d);
        for (who, pattern) in &self.cfg.authsenders {
            if who != "*" && *who != login_lc {
                continue;
            }
            let hit = match pattern.as_str() {
                "*" => true,
                "<>" => sender.is_empty(),
                p if p.starts_with('@') => domain.is_some_and(|d| d == &p[1..]),
                p => p == sender_lc,
            };
            if hit {
                return Ok(true);
            }
        }
        if sender.is_empty() {
            return Ok(false);
        }
        self.outside.alias_of(&sender_lc, &login_lc)
    }

    pub(super) fn rcpt(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if self.sender.is_none() {
            return self.error("503 5.5.1 MAIL first");
        }
        if smtp_path::needs_utf8(arg) && !self.smtputf8 {
            return self.error("553 5.6.7 a non-ASCII address needs SMTPUTF8 on MAIL");
        }
        let parsed = match smtp_path::parse_path_arg_utf8(arg, "TO", self.smtputf8) {
            Ok(p) => p,
            Err(PathError::Syntax(why)) => {
                return self.error(&format!("501 5.5.4 syntax error in RCPT: {why}"))
            }
            Err(PathError::TooLong(why) | PathError::BadLocal(why)) => {
                return self.error(&format!("501 5.1.3 {why}"))
            }
        };
        let Some(mut address) = parsed.address else {
            return self.error("501 5.1.3 a recipient may not be empty");
        };
        if !parsed.params.is_empty() {
            return self.error("555 5.5.4 unsupported RCPT parameter");
        }
        if self.rcpts.len() as u64 >= self.cfg.max_rcpts {
            if !self.rcpt_refused_for_count {
                self.rcpt_refused_for_count = true;
                self.reject("toomanyrcpts", None).emit_to(self.outside);
            }
            return self
                .reply("452 4.5.3 too many recipients")
                .map(|_| Flow::Continue);
        }
        let relay_allowed = self.peer.relayclient || self.auth_user.is_some();
        match relay::decide(&address, relay_allowed, &self.cfg.rcpthosts) {
            Decision::Accept => {}
            Decision::RelayTrick => {
                let shown = address.envelope();
                self.reject("relay", Some(&shown))
                    .kv("detail", "routing")
                    .emit_to(self.outside);
                return self.error("553 5.7.1 sorry, relaying through this server is not allowed");
            }
            Decision::NotOurs => {
                let shown = address.envelope();
                self.reject("relay", Some(&shown)).emit_to(self.outside);
                return self
                    .error("553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts");
            }
        }
        if address.domain.is_none() {
            // `<postmaster>` (RFC 5321 §4.5.1): ours, so a domain we accept mail for — not
            // `me`, which need not be one (its MX is us: the message would loop).
            match first_domain(&self.cfg.rcpthosts) {
                Some(d) => address.domain = Some(d.to_string()),
                None => {
                    self.reject("nodomain", Some(&address.envelope()))
                        .emit_to(self.outside);
                    return self
                        .reply("550 5.1.1 no domain to deliver a recipient without one to")
                        .map(|_| Flow::Continue);
                }
            }
        }
        let rcpt = address.envelope();
        // The same recipient twice is one delivery, not two copies (100 × one RCPT
        // would be 100 copies of up to databytes each). It was accepted once already.
        if self.rcpts.iter().any(|r| same_recipient(r, &rcpt)) {
            return self.reply("250 2.1.5 ok").map(|_| Flow::Continue);
        }
        if config::listed(&rcpt, &self.cfg.badrcptto) {
            self.reject("badrcptto", Some(&rcpt)).emit_to(self.outside);
            return self
                .reply("553 5.7.1 recipient refused")
                .map(|_| Flow::Continue);
        }
        let domain = address.domain.clone().unwrap_or_default();
        match self.outside.recipient(&rcpt, &domain) {
            Ok(Verdict::Valid) | Ok(Verdict::NotHosted) => {}
            Ok(Verdict::Unknown) => return self.unknown_rcpt(&rcpt, "unknownuser", None),
            // Only for a domain we take mail for; a relay client's mail to a listed
            // domain outside rcpthosts is outbound, as any other.
            Ok(Verdict::Verify) if relay::rcpthosts_allows(&domain, &self.cfg.rcpthosts) => {
                if let Some(flow) = self.verify_rcpt(&rcpt)? {
                    return Ok(flow);
                }
            }
            Ok(Verdict::Verify) => {}
            Err(e) => {
                return self
                    .temp_failure("451 4.3.0 temporary failure looking up the recipient", &e)
            }
        }
        if self.cfg.greylist.on && !relay_allowed {
            if let Some(flow) = self.greylist_rcpt(&rcpt)? {
                return Ok(flow);
            }
        }
        self.rcpts.push(rcpt);
        self.reply("250 2.1.5 ok").map(|_| Flow::Continue)
    }

    /// Greylisting (`control/greylist`), for a client that is neither authenticated nor
    /// a relay client: `None` when `rcpt` may be accepted, else the 451 already given.
    /// `goodmailfrom` senders pass; trouble keeping the state fails open (logged).
    fn greylist_rcpt(&mut self, rcpt: &str) -> io::Result<Option<Flow>> {
        let sender = self.sender.clone().unwrap_or_default();
        if config::listed(&sender, &self.cfg.goodmailfrom) {
            return Ok(None);
        }
        let verdict = match self
            .outside
            .greylist(&self.cfg.greylist, &self.peer.ip, &sender, rcpt)
        {
            Ok(v) => v,
            Err(e) => {
                let line = LogLine::event("error")
                    .kv("ip", &self.peer.ip)
                    .kv("what", format!("greylist: {}", e.msg));
                self.outside.log(line);
                return Ok(None);
            }
        };
        let mut line = LogLine::event("greylist")
            .kv("ip", &self.peer.ip)
            .kv("from", format!("<{sender}>"))
            .kv("rcpt", format!("<{rcpt}>"))
            .kv("result", verdict.word());
        if let greylist::Verdict::Defer { wait } = verdict {
            line.push("wait", wait);
            self.outside.log(line);
            return self
                .reply("451 4.7.1 greylisted, please try again later")
                .map(|_| Some(Flow::Continue));
        }
        self.outside.log(line);
        Ok(None)
    }

    /// Ask the next hop about `rcpt` (`control/verifyrecipients`): `None` when it exists
    /// (the caller accepts it), else the reply already given — 550 counted as an unknown
    /// user, 450 when nothing could be learnt, 451 when the prober could not be asked.
    fn verify_rcpt(&mut self, rcpt: &str) -> io::Result<Option<Flow>> {
        // A probe may take a while: the client gets what it is owed first.
        self.out.flush()?;
        let answer = match self.outside.verify(rcpt) {
            Ok(a) => a,
            Err(e) => {
                return self
                    .temp_failure("451 4.3.0 temporary failure verifying the recipient", &e)
                    .map(Some)
            }
        };
        let line = LogLine::event("verify")
            .kv("ip", &self.peer.ip)
            .kv("rcpt", format!("<{rcpt}>"))
            .kv("result", answer.outcome.as_str())
            .kv("cached", if answer.cached { "yes" } else { "no" })
            .kv("detail", &answer.text);
        self.outside.log(line);
        match answer.outcome {
            verifycache::Outcome::Pass => Ok(None),
            verifycache::Outcome::Fail => self
                .unknown_rcpt(rcpt, "unverified", Some(&answer.text))
                .map(Some),
            verifycache::Outcome::TempFail => {
                self.reject("verifytempfail", Some(rcpt))
                    .kv("detail", &answer.text)
                    .emit_to(self.outside);
                self.reply("450 4.4.3 unable to verify the recipient now, try again later")
                    .map(|_| Some(Flow::Continue))
            }
        }
    }

    /// 550 for an unknown user (or one the next hop refused: `reason=unverified`);
    /// slower with every one past the first few, then 421.
    fn unknown_rcpt(&mut self, rcpt: &str, reason: &str, detail: Option<&str>) -> io::Result<Flow> {
        self.unknown_rcpts += 1;
        let mut line = self.reject(reason, Some(rcpt));
        if let Some(d) = detail {
            line.push("detail", d);
        }
        line.emit_to(self.outside);
        if self.unknown_rcpts >= self.cfg.max_unknown_rcpts {
            self.reply("421 4.7.0 too many unknown recipients, closing connection")?;
            self.reject("dictionary", None)
                .kv("unknown", self.unknown_rcpts)
                .emit_to(self.outside);
            return Ok(Flow::Close("dictionary"));
        }
        if self.unknown_rcpts > config::FREE_UNKNOWN_RCPTS {
            self.out.flush()?;
            let steps = (self.unknown_rcpts - config::FREE_UNKNOWN_RCPTS) as u32;
            self.outside
                .sleep(self.cfg.unknown_rcpt_delay.saturating_mul(steps));
        }
        self.reply("550 5.1.1 sorry, no mailbox here by that name")
            .map(|_| Flow::Continue)
    }
}

/// Whether two envelope recipients are the same mailbox: the domain compared without
/// case (DNS names are case-insensitive), the local part exactly (RFC 5321 §2.4 leaves
/// its case to the receiving host).
fn same_recipient(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}
