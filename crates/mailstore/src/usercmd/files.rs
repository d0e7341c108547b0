//! The flat files `postern-user` edits (`control/domains`, `control/users`,
//! `control/aliases`, `control/rcpthosts`): raw lines kept with their comments and
//! order, entries replaced by key, and the three files checked as a whole before they
//! are written and the cdbs compiled.

use super::RCPTHOSTS;
use crate::address::{self, AliasKey};
use crate::userdb::{self, Sources, ALIASES, DOMAINS, USERS};
use postern_common::control::{parse_lines, Control};
use postern_common::{Result, ResultExt};

/// A flat file's raw lines (comments and all).
fn raw(control: &Control, name: &str) -> Result<Vec<String>> {
    Ok(control
        .read(name)?
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default())
}

fn join(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// The key a raw line defines (domain, address, alias key), if it is an entry.
fn key_of(file: &str, line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    match file {
        DOMAINS => address::domain(t).ok(),
        USERS => address::normalise(t.split(':').next()?.trim()).ok(),
        _ => AliasKey::parse(t.split(':').next()?.trim())
            .ok()
            .map(|k| k.key()),
    }
}

/// Edits to the three files, applied together.
#[derive(Default)]
pub(super) struct Change {
    domains: Option<Vec<String>>,
    users: Option<Vec<String>>,
    aliases: Option<Vec<String>>,
}

impl Change {
    fn lines<'c>(&'c mut self, control: &Control, file: &str) -> Result<&'c mut Vec<String>> {
        let slot = match file {
            DOMAINS => &mut self.domains,
            USERS => &mut self.users,
            _ => &mut self.aliases,
        };
        if slot.is_none() {
            *slot = Some(raw(control, file)?);
        }
        Ok(slot.as_mut().expect("just filled"))
    }

    pub(super) fn append(&mut self, control: &Control, file: &str, line: String) -> Result<()> {
        self.lines(control, file)?.push(line);
        Ok(())
    }

    /// Replace the entry `key` with `line` (or remove it when `None`). Returns whether
    /// there was one.
    pub(super) fn replace(
        &mut self,
        control: &Control,
        file: &str,
        key: &str,
        line: Option<String>,
    ) -> Result<bool> {
        let lines = self.lines(control, file)?;
        let mut found = false;
        let mut out = Vec::with_capacity(lines.len());
        for l in lines.drain(..) {
            if key_of(file, &l).as_deref() == Some(key) {
                if !found {
                    if let Some(new) = &line {
                        out.push(new.clone());
                    }
                }
                found = true;
            } else {
                out.push(l);
            }
        }
        *lines = out;
        Ok(found)
    }

    /// Check the edited files as a whole, write them, and compile the cdbs.
    pub(super) fn commit(self, control: &Control) -> Result<Sources> {
        let text = |slot: &Option<Vec<String>>, file: &str| -> Result<String> {
            match slot {
                Some(l) => Ok(join(l)),
                None => Ok(control.read(file)?.unwrap_or_default()),
            }
        };
        let (d, u, a) = (
            text(&self.domains, DOMAINS)?,
            text(&self.users, USERS)?,
            text(&self.aliases, ALIASES)?,
        );
        let sources = Sources::parse(&parse_lines(&d), &parse_lines(&u), &parse_lines(&a))?;
        for (slot, file, text, mode) in [
            (&self.domains, DOMAINS, &d, 0o644),
            (&self.users, USERS, &u, 0o600),
            (&self.aliases, ALIASES, &a, 0o644),
        ] {
            if slot.is_some() {
                postern_common::atomic::write_atomic(&control.path(file), text.as_bytes(), mode)
                    .temp(format!("unable to write control/{file}"))?;
            }
        }
        userdb::compile(control, &sources)?;
        Ok(sources)
    }
}

pub(super) fn user_line(address: &str, hash: &str, quota: Option<u64>, dir: &str) -> String {
    let q = quota.map(|q| q.to_string()).unwrap_or_else(|| "0".into());
    if dir == userdb::default_dir(address) {
        format!("{address}:{hash}:{q}")
    } else {
        format!("{address}:{hash}:{q}:{dir}")
    }
}

pub(super) fn alias_line<S: AsRef<str>>(key: &str, targets: &[S]) -> String {
    let targets: Vec<&str> = targets.iter().map(AsRef::as_ref).collect();
    format!("{key}: {}", targets.join(", "))
}

/// Add or remove `domain` in `control/rcpthosts`, keeping everything else.
pub(super) fn edit_rcpthosts(control: &Control, domain: &str, present: bool) -> Result<()> {
    let mut lines = raw(control, RCPTHOSTS)?;
    let has = lines.iter().any(|l| l.trim().eq_ignore_ascii_case(domain));
    if has == present {
        return Ok(());
    }
    if present {
        lines.push(domain.to_string());
    } else {
        lines.retain(|l| !l.trim().eq_ignore_ascii_case(domain));
    }
    postern_common::atomic::write_atomic(&control.path(RCPTHOSTS), join(&lines).as_bytes(), 0o644)
        .temp(format!("unable to write control/{RCPTHOSTS}"))
}
