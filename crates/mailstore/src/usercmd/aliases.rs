//! `alias add|del|list`: aliases of hosted domains, never the address of a mailbox.

use super::files::{alias_line, Change};
use super::mailbox::hosted_domain;
use super::{args, say, usage, Ctx};
use crate::address::{self, AliasKey};
use crate::userdb::{self, Sources, ALIASES};
use postern_common::{Error, Result};

pub(super) fn alias_add(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let (key, targets) = match rest {
        [key, targets @ ..] if !targets.is_empty() => (AliasKey::parse(key)?, targets),
        _ => return Err(usage()),
    };
    let mut new = Vec::new();
    for t in targets {
        new.push(address::target(t)?);
    }
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    hosted_domain(&sources, key.domain())?;
    if sources.user(&key.key()).is_some() {
        return Err(Error::perm(format!(
            "{} is a mailbox: an address is either a mailbox or an alias",
            key.key()
        )));
    }
    let mut all = sources
        .aliases
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.targets.clone())
        .unwrap_or_default();
    for t in new {
        if !all.contains(&t) {
            all.push(t);
        }
    }
    let mut change = Change::default();
    let line = alias_line(&key.key(), &all);
    if !change.replace(&ctx.control, ALIASES, &key.key(), Some(line.clone()))? {
        change.append(&ctx.control, ALIASES, line.clone())?;
    }
    change.commit(&ctx.control)?;
    say(ctx, line)
}

pub(super) fn alias_del(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [a] = args::<1>(rest)?;
    let key = AliasKey::parse(a)?;
    let _lock = userdb::lock(&ctx.control)?;
    Sources::read(&ctx.control)?;
    let mut change = Change::default();
    if !change.replace(&ctx.control, ALIASES, &key.key(), None)? {
        return Err(Error::perm(format!("no such alias: {}", key.key())));
    }
    change.commit(&ctx.control)?;
    say(ctx, format!("deleted alias {}", key.key()))
}

pub(super) fn alias_list(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    args::<0>(rest)?;
    let sources = Sources::read(&ctx.control)?;
    for a in &sources.aliases {
        say(ctx, alias_line(&a.key.key(), &a.targets))?;
    }
    Ok(())
}
