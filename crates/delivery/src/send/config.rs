//! postern-send's control files, read at start and on SIGHUP (docs/postern-send.md).

use postern_common::control::Control;
use postern_common::Result;

/// Hard ceiling for either concurrency (as qmail's spawn limit).
pub const MAX_CONCURRENCY: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub concurrency_local: usize,
    pub concurrency_remote: usize,
    pub queue_lifetime: u64,
    /// `me`: the host named in bounces.
    pub me: String,
    /// The bounce `From:` address.
    pub bounce_from: String,
    /// Where double bounces go.
    pub double_bounce_to: String,
    /// Addresses (lower-case) and `@domain`s whose mail goes in the priority lane.
    pub priority_senders: Vec<String>,
    /// Subject tokens (lower-case) that put a message in the priority lane.
    pub priority_subjects: Vec<String>,
    /// Account postern-remote runs as when postern-send is root.
    pub remote_user: Option<String>,
    /// `alertto` (lower-case): mail to these is never held by `holdbulk`.
    pub alert_to: Vec<String>,
}

impl Config {
    pub fn load(c: &Control) -> Result<Config> {
        let me = c.value_or("me", &postern_common::control::system_hostname())?;
        let clamp = |n: u64| n.clamp(1, MAX_CONCURRENCY) as usize;
        let bounce_host = c.value_or("bouncehost", &me)?;
        let bounce_from = c.value_or("bouncefrom", "MAILER-DAEMON")?;
        let first_rcpthost = c
            .list("rcpthosts")?
            .into_iter()
            .map(|l| l.text)
            .find(|t| !t.starts_with('.'));
        let alert_to = match c.list("alertto")? {
            v if v.is_empty() => first_rcpthost
                .iter()
                .map(|h| format!("postmaster@{}", h.to_ascii_lowercase()))
                .collect(),
            v => v.into_iter().map(|l| l.text.to_ascii_lowercase()).collect(),
        };
        let db_host = c
            .value("doublebouncehost")?
            .or(first_rcpthost)
            .unwrap_or_else(|| me.clone());
        let db_to = c.value_or("doublebounceto", "postmaster")?;
        let lower = |v: Vec<postern_common::control::Line>| {
            v.into_iter()
                .map(|l| l.text.to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        Ok(Config {
            concurrency_local: clamp(c.number("concurrencylocal", 10)?),
            concurrency_remote: clamp(c.number("concurrencyremote", 20)?),
            queue_lifetime: c.number("queuelifetime", 604_800)?,
            bounce_from: if bounce_from.contains('@') {
                bounce_from
            } else {
                format!("{bounce_from}@{bounce_host}")
            },
            double_bounce_to: if db_to.contains('@') {
                db_to
            } else {
                format!("{db_to}@{db_host}")
            },
            me,
            priority_senders: lower(c.list("prioritysenders")?),
            priority_subjects: lower(c.list("prioritysubject")?),
            remote_user: c.value("remoteuser")?,
            alert_to,
        })
    }

    /// Whether mail from `sender` with `subject` goes in the priority lane.
    pub fn is_priority(&self, sender: &str, subject: Option<&str>) -> bool {
        let sender = sender.to_ascii_lowercase();
        let domain = sender.rsplit_once('@').map(|(_, d)| format!("@{d}"));
        if !sender.is_empty()
            && self
                .priority_senders
                .iter()
                .any(|p| *p == sender || Some(p) == domain.as_ref())
        {
            return true;
        }
        match subject {
            Some(s) => {
                let s = s.to_ascii_lowercase();
                self.priority_subjects
                    .iter()
                    .any(|t| s.contains(t.as_str()))
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_priority_rules() {
        let d = tempfile::tempdir().unwrap();
        let c = Control::at(d.path());
        std::fs::write(d.path().join("me"), "mx.test\n").unwrap();
        std::fs::write(d.path().join("rcpthosts"), ".sub.test\nx.test\n").unwrap();
        std::fs::write(
            d.path().join("prioritysenders"),
            "Boss@X.test\n@internal.test\n",
        )
        .unwrap();
        std::fs::write(d.path().join("prioritysubject"), "[URGENT]\n").unwrap();
        let cfg = Config::load(&c).unwrap();
        assert_eq!(
            (
                cfg.concurrency_local,
                cfg.concurrency_remote,
                cfg.queue_lifetime
            ),
            (10, 20, 604_800)
        );
        assert_eq!(cfg.bounce_from, "MAILER-DAEMON@mx.test");
        assert_eq!(cfg.double_bounce_to, "postmaster@x.test");
        assert_eq!(cfg.alert_to, vec!["postmaster@x.test"]);
        std::fs::write(d.path().join("alertto"), "Admin@Y.test\n").unwrap();
        assert_eq!(Config::load(&c).unwrap().alert_to, vec!["admin@y.test"]);
        assert!(cfg.is_priority("boss@x.test", None));
        assert!(cfg.is_priority("anyone@Internal.test", None));
        assert!(cfg.is_priority("a@b.test", Some("Re: [urgent] help")));
        assert!(!cfg.is_priority("a@b.test", Some("hello")));
        assert!(!cfg.is_priority("", None));
    }
}
