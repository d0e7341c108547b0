//! `domain add|del|list`: a hosted domain with its postmaster and abuse addresses, kept
//! in step with `control/rcpthosts`.

use super::files::{alias_line, edit_rcpthosts, Change};
use super::mailbox::{add_mailbox, hosted_domain, record_popularity};
use super::{args, say, Ctx};
use crate::address;
use crate::userdb::{self, Sources, ALIASES, DOMAINS};
use postern_common::{Error, Result};

pub(super) fn domain_add(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [d] = args::<1>(rest)?;
    let domain = address::domain(d)?;
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    if sources.hosts(&domain) {
        return Err(Error::perm(format!(
            "domain {domain} is already hosted here"
        )));
    }
    let mut change = Change::default();
    change.append(&ctx.control, DOMAINS, domain.clone())?;
    let postmaster = format!("postmaster@{domain}");
    let abuse = format!("abuse@{domain}");
    let (token, message) = match ctx.postmaster.clone() {
        Some(target) => {
            let target = address::target(&target)?;
            change.append(
                &ctx.control,
                ALIASES,
                alias_line(&postmaster, &[target.as_str()]),
            )?;
            change.append(
                &ctx.control,
                ALIASES,
                alias_line(&abuse, &[target.as_str()]),
            )?;
            (
                None,
                format!("added {domain}: {postmaster} and {abuse} go to {target}"),
            )
        }
        None => {
            let token = add_mailbox(ctx, &mut change, &postmaster)?;
            change.append(
                &ctx.control,
                ALIASES,
                alias_line(&abuse, &[postmaster.as_str()]),
            )?;
            (
                token,
                format!("added {domain}: mailbox {postmaster}, and {abuse} goes to it"),
            )
        }
    };
    change.commit(&ctx.control)?;
    record_popularity(ctx, token)?;
    edit_rcpthosts(&ctx.control, &domain, true)?;
    say(ctx, message)
}

pub(super) fn domain_del(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [d] = args::<1>(rest)?;
    let domain = address::domain(d)?;
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    hosted_domain(&sources, &domain)?;
    let suffix = format!("@{domain}");
    let left = sources
        .users
        .iter()
        .filter(|u| u.address.ends_with(&suffix))
        .count();
    if left > 0 {
        return Err(Error::perm(format!(
            "domain {domain} still has {left} mailboxes: delete them first"
        )));
    }
    let mut change = Change::default();
    for a in sources.aliases.iter().filter(|a| a.key.domain() == domain) {
        change.replace(&ctx.control, ALIASES, &a.key.key(), None)?;
    }
    change.replace(&ctx.control, DOMAINS, &domain, None)?;
    change.commit(&ctx.control)?;
    edit_rcpthosts(&ctx.control, &domain, false)?;
    say(ctx, format!("deleted {domain} and its aliases"))
}

pub(super) fn domain_list(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    args::<0>(rest)?;
    let sources = Sources::read(&ctx.control)?;
    for (_, d) in &sources.domains {
        say(ctx, d)?;
    }
    Ok(())
}
