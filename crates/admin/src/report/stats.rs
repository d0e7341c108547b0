//! The numbers of a report, gathered one log line at a time: mail in and out per hour,
//! volume, refusals by category, top senders, recipient domains, blocked IPs, viruses.
//! Every table is bounded: past [`MAX_KEYS`] distinct names, new names are summed as
//! "(others)" so a flood of random senders cannot exhaust memory.

use super::events::{self, Category, Class};
use postern_common::logline;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Most distinct names kept per table (senders, domains, IPs, viruses, reasons).
pub const MAX_KEYS: usize = 50_000;
/// Most queue IDs whose size is remembered, to give remote deliveries their bytes.
pub const MAX_SIZES: usize = 100_000;
/// A checker's `authfail` and the front end's failure line for the same IP within this
/// many seconds in the same log are one failure.
pub const AUTH_PAIR_SECS: i64 = 30;
/// Longest time range shown day by day with its empty days.
pub const MAX_DAYS: i64 = 400;
/// Most unpaired checker failures remembered.
pub const MAX_PENDING_AUTH: usize = 10_000;

/// Counts by name, bounded by [`MAX_KEYS`].
#[derive(Debug, Default, Clone)]
pub struct Counter {
    map: HashMap<String, u64>,
    /// Counted after the table was full, for names not in it.
    pub overflow: u64,
}

impl Counter {
    pub fn add(&mut self, key: &str, n: u64) {
        if let Some(v) = self.map.get_mut(key) {
            *v += n;
        } else if self.map.len() < MAX_KEYS {
            self.map.insert(key.to_string(), n);
        } else {
            self.overflow += n;
        }
    }

    pub fn get(&self, key: &str) -> u64 {
        self.map.get(key).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.map.values().sum::<u64>() + self.overflow
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.overflow == 0
    }

    /// Distinct names kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The `n` largest, largest first, ties by name.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.map.iter().map(|(k, &v)| (k.clone(), v)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

/// One time bucket (an hour, in local time).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub rejected: u64,
}

/// Queue size, counted from `queue/new` and `queue/mess` as postern-qstat does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    pub total: u64,
    pub unprocessed: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Earliest and latest time of a counted line (unix seconds).
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Lines read (after `--since`).
    pub lines: u64,
    /// Lines with an event the table does not know, or no event at all.
    pub other_lines: u64,
    pub in_msgs: u64,
    pub in_bytes: u64,
    /// Remote deliveries done (one per recipient, as postern-send logs them).
    pub out_msgs: u64,
    pub out_bytes: u64,
    /// Remote attempts deferred, remote recipients failed.
    pub remote_deferred: u64,
    pub remote_failed: u64,
    /// Local deliveries done, attempts deferred, recipients failed.
    pub local_msgs: u64,
    pub local_deferred: u64,
    pub local_failed: u64,
    /// Hour bucket start (unix seconds) → counts.
    pub hours: BTreeMap<i64, Bucket>,
    /// Refusals by [`Category::index`].
    pub rejected: [u64; Category::ALL.len()],
    /// The raw `event/reason` of refusals counted as [`Category::Other`].
    pub other_reasons: Counter,
    pub senders: Counter,
    pub rcpt_domains: Counter,
    pub blocked_ips: Counter,
    /// Refusals of `posternctl audit`'s own relay probe (counted in their category, but
    /// never as blocked IPs).
    pub audit_probe: u64,
    pub viruses: Counter,
    /// Greylisting answers by `result` (defer, retried, known, client).
    pub greylist: Counter,
    /// Spam scores of scored messages (postern-scan's `event=spam … score=`), by range.
    pub scores: Counter,
    /// Log directories read, with their line counts.
    pub sources: BTreeMap<String, u64>,
    pub queue: Option<Queue>,
    sizes: HashMap<String, u64>,
    size_order: VecDeque<String>,
    /// (log, ip) → times of checker `authfail` lines not yet paired with a front end's.
    pending_auth: HashMap<(String, String), VecDeque<i64>>,
    pending_count: usize,
}

/// The ranges spam scores are counted in, in the order reports show them.
pub const SCORE_RANGES: [&str; 6] = [
    "below 0",
    "0 to 2",
    "2 to 5",
    "5 to 10",
    "10 to 15",
    "15 and up",
];

/// The range of [`SCORE_RANGES`] a score falls in.
pub fn score_range(score: f64) -> &'static str {
    match score {
        s if s < 0.0 => SCORE_RANGES[0],
        s if s < 2.0 => SCORE_RANGES[1],
        s if s < 5.0 => SCORE_RANGES[2],
        s if s < 10.0 => SCORE_RANGES[3],
        s if s < 15.0 => SCORE_RANGES[4],
        _ => SCORE_RANGES[5],
    }
}

/// The start of the local-time hour holding `t`.
pub fn hour_of(t: i64) -> i64 {
    let off = local_offset(t);
    (t + off).div_euclid(3600) * 3600 - off
}

/// Seconds local time is ahead of UTC at `t`.
pub fn local_offset(t: i64) -> i64 {
    use chrono::{Local, Offset, TimeZone};
    match Local.timestamp_opt(t, 0) {
        chrono::LocalResult::Single(d) | chrono::LocalResult::Ambiguous(d, _) => {
            d.offset().fix().local_minus_utc() as i64
        }
        chrono::LocalResult::None => 0,
    }
}

fn unbracket(addr: &str) -> &str {
    addr.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(addr)
}

fn number(fields: &[(String, String)], key: &str) -> u64 {
    logline::get(fields, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The start of the local-time day holding `t`.
pub fn day_of(t: i64) -> i64 {
    let off = local_offset(t);
    (t + off).div_euclid(86_400) * 86_400 - off
}

/// `t` as local time in `format` (chrono's strftime).
pub fn local_time(t: i64, format: &str) -> String {
    use chrono::{Local, TimeZone};
    match Local.timestamp_opt(t, 0).earliest() {
        Some(d) => d.format(format).to_string(),
        None => t.to_string(),
    }
}

/// How the time series is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Hour,
    Day,
}

impl Stats {
    /// Every hour from the first to the last line (empty ones too), or every day when
    /// that would be more than `max_hours` rows.
    pub fn series(&self, max_hours: usize) -> (Step, Vec<(i64, Bucket)>) {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return (Step::Hour, Vec::new());
        };
        let hours = ((hour_of(last) - hour_of(first)) / 3600 + 1) as usize;
        if hours <= max_hours {
            let mut out = Vec::with_capacity(hours);
            let mut h = hour_of(first);
            while h <= last {
                out.push((h, self.hours.get(&h).copied().unwrap_or_default()));
                // Next hour boundary, also across a DST change.
                h = hour_of(h + 3600 + 1800);
            }
            return (Step::Hour, out);
        }
        let mut days: BTreeMap<i64, Bucket> = BTreeMap::new();
        let mut d = day_of(first);
        // A range of years (a wrong clock) would be mostly empty days: show only full ones.
        while d <= last && (last - first) / 86_400 <= MAX_DAYS {
            days.insert(d, Bucket::default());
            d = day_of(d + 86_400 + 43_200);
        }
        for (&h, b) in &self.hours {
            let e = days.entry(day_of(h)).or_default();
            e.in_msgs += b.in_msgs;
            e.in_bytes += b.in_bytes;
            e.out_msgs += b.out_msgs;
            e.out_bytes += b.out_bytes;
            e.rejected += b.rejected;
        }
        (Step::Day, days.into_iter().collect())
    }

    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }

    pub fn rejected_in(&self, c: Category) -> u64 {
        self.rejected[c.index()]
    }

    /// Count one log line from log directory `log`, written at `time`.
    pub fn add(&mut self, log: &str, time: Option<i64>, line: &str) {
        self.lines += 1;
        *self.sources.entry(log.to_string()).or_default() += 1;
        if let Some(t) = time {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
        if events::classify_text(line).is_some() {
            return; // known, and not counted (see the table)
        }
        let fields = logline::parse(line);
        let Some(class) = events::classify(&fields) else {
            self.other_lines += 1;
            return;
        };
        let get = |k| logline::get(&fields, k);
        if let Some(score) = get("score").and_then(|v| v.parse::<f64>().ok()) {
            if get("event") == Some("spam") {
                self.scores.add(score_range(score), 1);
            }
        }
        match class {
            Class::Info => {}
            Class::Greylist => self.greylist.add(get("result").unwrap_or("?"), 1),
            Class::Accept => {
                let size = number(&fields, "size");
                self.in_msgs += 1;
                self.in_bytes += size;
                let b = self.bucket(time);
                b.in_msgs += 1;
                b.in_bytes += size;
                let from = unbracket(get("from").unwrap_or(""));
                self.senders
                    .add(if from.is_empty() { "<>" } else { from }, 1);
            }
            Class::Queued => {
                if let Some(id) = get("id") {
                    self.remember_size(id, number(&fields, "size"));
                }
            }
            Class::Delivery => self.delivery(&fields, time),
            Class::Reject(category) => {
                if category == Category::AuthFailure && self.pair_auth(log, get("ip"), time) {
                    return; // the checker's line for this failure was counted already
                }
                self.reject(category, &fields, time);
            }
            Class::CheckerAuthFail => {
                self.reject(Category::AuthFailure, &fields, time);
                if let (Some(ip), Some(t)) = (get("ip"), time) {
                    if self.pending_count >= MAX_PENDING_AUTH {
                        self.forget_unpaired(t);
                    }
                    if self.pending_count < MAX_PENDING_AUTH {
                        self.pending_count += 1;
                        self.pending_auth
                            .entry((log.to_string(), ip.to_string()))
                            .or_default()
                            .push_back(t);
                    }
                }
            }
        }
    }

    fn bucket(&mut self, time: Option<i64>) -> &mut Bucket {
        // A line without any time (cannot happen with multilog's stamps) goes in hour 0.
        self.hours
            .entry(time.map(hour_of).unwrap_or(0))
            .or_default()
    }

    fn remember_size(&mut self, id: &str, size: u64) {
        if self.sizes.len() >= MAX_SIZES {
            if let Some(old) = self.size_order.pop_front() {
                self.sizes.remove(&old);
            }
        }
        if self.sizes.insert(id.to_string(), size).is_none() {
            self.size_order.push_back(id.to_string());
        }
    }

    fn delivery(&mut self, fields: &[(String, String)], time: Option<i64>) {
        let get = |k| logline::get(fields, k);
        let remote = get("kind") == Some("remote");
        match get("result") {
            Some("ok") if remote => {
                let size = get("id")
                    .and_then(|id| self.sizes.get(id))
                    .copied()
                    .unwrap_or(0);
                self.out_msgs += 1;
                self.out_bytes += size;
                let b = self.bucket(time);
                b.out_msgs += 1;
                b.out_bytes += size;
            }
            Some("ok") => self.local_msgs += 1,
            Some("fail") if remote => self.remote_failed += 1,
            Some("fail") => self.local_failed += 1,
            _ => {
                if remote {
                    self.remote_deferred += 1;
                } else {
                    self.local_deferred += 1;
                }
                return; // tried again later: its domain is counted once, when it ends
            }
        }
        let rcpt = unbracket(get("rcpt").unwrap_or(""));
        if let Some((_, domain)) = rcpt.rsplit_once('@') {
            self.rcpt_domains.add(&domain.to_ascii_lowercase(), 1);
        }
    }

    /// Drop checker failures too old to be paired at `now` (a front end that never logs
    /// its own line leaves them behind).
    fn forget_unpaired(&mut self, now: i64) {
        self.pending_auth.retain(|_, q| {
            q.retain(|&t| now - t <= AUTH_PAIR_SECS);
            !q.is_empty()
        });
        self.pending_count = self.pending_auth.values().map(VecDeque::len).sum();
    }

    /// Whether a front end's auth failure is the partner of a checker's line just seen.
    fn pair_auth(&mut self, log: &str, ip: Option<&str>, time: Option<i64>) -> bool {
        let (Some(ip), Some(t)) = (ip, time) else {
            return false;
        };
        let key = (log.to_string(), ip.to_string());
        let Some(queue) = self.pending_auth.get_mut(&key) else {
            return false;
        };
        while let Some(&first) = queue.front() {
            queue.pop_front();
            self.pending_count -= 1;
            if t - first <= AUTH_PAIR_SECS && first <= t {
                if queue.is_empty() {
                    self.pending_auth.remove(&key);
                }
                return true;
            }
        }
        self.pending_auth.remove(&key);
        false
    }

    fn reject(&mut self, category: Category, fields: &[(String, String)], time: Option<i64>) {
        let get = |k| logline::get(fields, k);
        self.rejected[category.index()] += 1;
        self.bucket(time).rejected += 1;
        // postern-ratelimit names a blocked client as `kind=ip key=IP`.
        let ip = get("ip").or_else(|| get("key").filter(|_| get("kind") == Some("ip")));
        let probe = events::is_audit_probe(fields);
        if probe {
            self.audit_probe += 1;
        } else if let Some(ip) = ip.filter(|ip| !ip.is_empty() && *ip != "local") {
            if category.blocks() {
                self.blocked_ips.add(ip, 1);
            }
        }
        match category {
            Category::Virus => {
                let name = get("detail")
                    .filter(|d| !d.is_empty())
                    .unwrap_or("(unnamed)");
                self.viruses.add(name, 1);
            }
            Category::Other => {
                let event = get("event").unwrap_or("?");
                let why = get("reason").map(|r| format!("{event}/{r}"));
                self.other_reasons.add(why.as_deref().unwrap_or(event), 1);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(lines: &[&str]) -> Stats {
        let mut s = Stats::default();
        for (i, l) in lines.iter().enumerate() {
            s.add("smtpd", Some(1_700_000_000 + i as i64), l);
        }
        s
    }

    #[test]
    fn greylisting_pregreet_and_scores() {
        let s = stats(&[
            "event=greylist ip=192.0.2.1 from=<a@x.test> rcpt=<b@y.test> result=defer wait=300",
            "event=greylist ip=192.0.2.1 from=<a@x.test> rcpt=<c@y.test> result=defer wait=300",
            "event=greylist ip=192.0.2.1 from=<a@x.test> rcpt=<b@y.test> result=retried",
            "event=pregreet ip=203.0.113.9 result=drop why=talked-first after=3ms text=EHLO",
            "event=pregreet ip=203.0.113.8 result=gone after=2000ms",
            "event=spam ip=192.0.2.1 engine=rspamd origin=inbound score=1.5 required=15.0 action=none",
            "event=spam ip=192.0.2.1 engine=spamd origin=inbound score=7.0 required=5.0 action=tag",
            "event=spam ip=192.0.2.1 engine=rspamd origin=inbound score=22.5 required=15.0 action=reject",
            "event=quarantine ip=192.0.2.1 reason=spam rule=rspamd:127.0.0.1:11333:reject",
            "event=spam ip=192.0.2.1 action=skipped origin=authenticated",
        ]);
        assert_eq!(s.greylist.get("defer"), 2);
        assert_eq!(s.greylist.get("retried"), 1);
        assert_eq!(s.rejected_in(Category::Pregreet), 1);
        assert_eq!(s.blocked_ips.get("203.0.113.9"), 1);
        assert_eq!(
            s.total_rejected(),
            2,
            "a deferral is not a refusal; the spam one is"
        );
        assert_eq!(s.scores.get("0 to 2"), 1);
        assert_eq!(s.scores.get("5 to 10"), 1);
        assert_eq!(s.scores.get("15 and up"), 1);
        assert_eq!(s.other_lines, 0);
    }

    #[test]
    fn accepts_and_remote_deliveries() {
        let s = stats(&[
            "event=accept ip=192.0.2.1 from=<a@x.test> rcpts=1 size=100",
            "event=accept ip=192.0.2.1 from=<> rcpts=1 size=50",
            "event=new id=7 from=<a@x.test> rcpts=2 size=120",
            "event=delivery id=7 rcpt=<b@Far.test> kind=remote result=ok",
            "event=delivery id=7 rcpt=<c@far.test> kind=remote result=defer",
            "event=delivery id=7 rcpt=<c@far.test> kind=remote result=fail",
            "event=delivery id=7 rcpt=<d@here.test> kind=local result=ok",
        ]);
        assert_eq!((s.in_msgs, s.in_bytes), (2, 150));
        assert_eq!((s.out_msgs, s.out_bytes), (1, 120));
        assert_eq!((s.local_msgs, s.local_deferred, s.local_failed), (1, 0, 0));
        assert_eq!((s.remote_deferred, s.remote_failed), (1, 1));
        assert_eq!(s.senders.get("a@x.test"), 1);
        assert_eq!(s.senders.get("<>"), 1);
        assert_eq!(s.rcpt_domains.get("far.test"), 2);
        assert_eq!(s.rcpt_domains.get("here.test"), 1);
    }

    #[test]
    fn checker_and_front_end_auth_failures_count_once() {
        let s = stats(&[
            "event=authfail ip=192.0.2.9 user=x reason=badpass",
            "event=reject ip=192.0.2.9 reason=authfail user=x",
            "event=reject ip=192.0.2.9 reason=authfail user=x",
        ]);
        assert_eq!(s.rejected_in(Category::AuthFailure), 2);
        assert_eq!(s.blocked_ips.get("192.0.2.9"), 2);
    }

    #[test]
    fn unpaired_checker_failures_are_forgotten_in_time() {
        let mut s = Stats::default();
        for i in 0..MAX_PENDING_AUTH as i64 + 10 {
            s.add(
                "pop3d",
                Some(i * 100),
                "event=authfail ip=192.0.2.9 reason=badpass",
            );
        }
        assert!(s.pending_count <= MAX_PENDING_AUTH);
        let t = (MAX_PENDING_AUTH as i64 + 10) * 100;
        s.add(
            "pop3d",
            Some(t),
            "event=authfail ip=192.0.2.1 reason=badpass",
        );
        s.add(
            "pop3d",
            Some(t + 1),
            "event=loginfail ip=192.0.2.1 reason=auth",
        );
        assert_eq!(
            s.rejected_in(Category::AuthFailure),
            MAX_PENDING_AUTH as u64 + 11
        );
    }

    #[test]
    fn other_refusals_keep_their_reason() {
        let s = stats(&[
            "event=reject ip=192.0.2.1 reason=hops",
            "event=quarantine ip=192.0.2.1 reason=virus detail=Eicar-Test-Signature",
            "event=whatever",
            "not a log line",
        ]);
        assert_eq!(s.other_reasons.get("reject/hops"), 1);
        assert_eq!(s.viruses.get("Eicar-Test-Signature"), 1);
        assert_eq!(s.other_lines, 2);
        assert_eq!(s.total_rejected(), 2);
    }

    #[test]
    fn local_and_remote_results_are_counted_apart() {
        let s = stats(&[
            "event=delivery id=1 rcpt=<a@here.test> kind=local result=defer tries=1 text=\"quota\"",
            "event=delivery id=1 rcpt=<a@here.test> kind=local result=fail tries=2 text=\"quota\"",
            "event=delivery id=2 rcpt=<b@far.test> kind=remote result=fail tries=1 text=\"550 no\"",
            "event=delivery id=3 rcpt=<c@far.test> kind=remote result=fail tries=1 text=\"550 no\"",
            "event=delivery id=4 rcpt=<d@far.test> kind=remote result=defer tries=1 text=\"421\"",
        ]);
        assert_eq!((s.local_msgs, s.local_deferred, s.local_failed), (0, 1, 1));
        assert_eq!((s.out_msgs, s.remote_deferred, s.remote_failed), (0, 1, 2));
    }

    #[test]
    fn neither_the_audit_probe_nor_auth_required_is_a_blocked_ip() {
        let s = stats(&[
            "event=reject ip=127.0.0.200 reason=unknownuser helo=audit.example.net from=<postern-audit@relaytest.example.net> rcpt=<postern-audit-x@example.test>",
            "event=reject ip=127.0.0.200 reason=relay helo=audit.example.net from=<postern-audit@relaytest.example.net> rcpt=<postern-audit@relaytest.example.net>",
            "event=reject ip=192.0.2.7 reason=authrequired helo=laptop",
            "event=reject ip=203.0.113.5 reason=relay helo=x from=<s@spam.test> rcpt=<v@victim.test>",
        ]);
        assert_eq!(s.rejected_in(Category::Relay), 2);
        assert_eq!(s.rejected_in(Category::UnknownUser), 1);
        assert_eq!(s.rejected_in(Category::AuthRequired), 1);
        assert_eq!(s.rejected_in(Category::AuthFailure), 0);
        assert_eq!(s.audit_probe, 2);
        assert_eq!(s.blocked_ips.top(10), vec![("203.0.113.5".to_string(), 1)]);
    }

    #[test]
    fn scan_refusals_count_once_by_reason() {
        // As postern-scan writes them into smtpd's log, with smtpd's own line after.
        let s = stats(&[
            "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=attachment rule=\".exe (filter.rules:19)\" detail=\"Executable: a.exe\" copy=quarantine/new/1",
            "postern-scan: refused: attachment: Executable: a.exe",
            "event=reject ip=192.0.2.10 reason=queue helo=x from=<x@evil.test> code=82 detail=\"message refused: Executable\"",
            "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=mime rule=structure detail=\"two Content-Type headers\" copy=quarantine/new/2",
            "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=partial rule=message/partial detail=x copy=quarantine/new/3",
            "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=header rule=\"love (filter.rules:40)\" detail=LoveLetter copy=quarantine/new/4",
            "event=quarantine ip=192.0.2.10 from=<x@evil.test> rcpts=1 reason=virus rule=clamd:/s:Eicar detail=Eicar copy=quarantine/new/5",
            "postern-scan: refused: virus: Eicar",
        ]);
        assert_eq!(s.rejected_in(Category::ContentRule), 2);
        assert_eq!(s.rejected_in(Category::Mime), 2);
        assert_eq!(s.rejected_in(Category::Virus), 1);
        assert_eq!(s.rejected_in(Category::Other), 0);
        assert_eq!(s.total_rejected(), 5);
        assert_eq!(s.other_lines, 0);
        assert_eq!(s.blocked_ips.get("192.0.2.10"), 5);
    }

    #[test]
    fn counters_are_bounded() {
        let mut c = Counter::default();
        for i in 0..MAX_KEYS + 5 {
            c.add(&i.to_string(), 1);
        }
        assert_eq!(c.overflow, 5);
        assert_eq!(c.total(), (MAX_KEYS + 5) as u64);
    }
}
