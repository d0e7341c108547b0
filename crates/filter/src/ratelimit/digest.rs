//! The alert digest: events queued as they happen, mailed together at most once per
//! `alertinterval` (through [`super::alerts`]).

use super::{alerts, Engine, MAX_DIGEST};
use postern_common::logline::LogLine;

impl Engine {
    /// Queue an alert event; [`Engine::flush_alerts`] mails the digest.
    pub(super) fn alert(&mut self, subject: &str, body: &str, now: u64) {
        if self.digest.0.len() >= MAX_DIGEST {
            self.digest.1 += 1;
            LogLine::event("alert")
                .kv("subject", subject)
                .kv("suppressed", self.digest.1)
                .emit();
        } else {
            self.digest.0.push((subject.to_string(), body.to_string()));
        }
        self.flush_alerts(now);
    }

    /// Mail the queued alert events as one message, unless one went out less than
    /// `alertinterval` seconds ago (then they wait: at most one alert mail per interval,
    /// listing every event). The first event after a quiet interval goes out at once.
    pub fn flush_alerts(&mut self, now: u64) {
        if self.digest.0.is_empty() {
            return;
        }
        if self
            .last_alert
            .is_some_and(|last| now < last + self.settings.alertinterval)
        {
            return;
        }
        let (events, more) = std::mem::take(&mut self.digest);
        self.last_alert = Some(now);
        let (subject, body) = match (&events[..], more) {
            ([(subject, body)], 0) => (subject.clone(), body.clone()),
            _ => {
                let n = events.len() as u64 + more;
                // Rate-limit events only: as before; with postern-scan's refusals among
                // them, a digest of both.
                let all_ratelimit = events
                    .iter()
                    .all(|(subject, _)| subject.starts_with("[postern] rate limit"));
                let what = if all_ratelimit {
                    "rate-limit events"
                } else {
                    "events"
                };
                let mut body = format!(
                    "{n} {what} since the last alert (one mail per {} seconds at \
                     most, alertinterval in control/ratelimit):\n\n",
                    self.settings.alertinterval
                );
                for (subject, _) in &events {
                    body.push_str(&format!("- {subject}\n"));
                }
                if more > 0 {
                    body.push_str(&format!("- and {more} more (in postern-ratelimit's log)\n"));
                }
                for (subject, text) in &events {
                    body.push_str(&format!("\n== {subject}\n\n{text}"));
                }
                let subject = if all_ratelimit {
                    format!("[postern] rate limit: {n} events")
                } else {
                    format!("[postern] alerts: {n} events")
                };
                (subject, body)
            }
        };
        let result = crate::scan::alert::recipient(&self.control).and_then(|to| {
            let me = self
                .control
                .value_or("me", &postern_common::control::system_hostname())?;
            Ok((to, me))
        });
        let sent = match result {
            Ok((to, me)) => {
                alerts::send(&to, &alerts::compose(&me, &to, &subject, &body)).map(|_| to)
            }
            Err(e) => Err(e.msg),
        };
        match sent {
            Ok(to) => LogLine::event("alert")
                .kv("to", to)
                .kv("subject", &subject)
                .kv("events", events.len() as u64 + more)
                .emit(),
            Err(why) => LogLine::event("error")
                .kv("what", "alert")
                .kv("subject", &subject)
                .kv("error", why)
                .emit(),
        }
    }
}
