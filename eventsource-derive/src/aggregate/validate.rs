//! The rules a `#[derive(Aggregate)]` item must follow that the macro can see on its own.
//! Rules over the listed events' identities are const assertions in the expansion.

use crate::ctxt::Ctxt;
use crate::events;
use crate::parse;

use super::ast::Aggregate;

pub(crate) fn check(cx: &Ctxt, aggregate: &Aggregate<'_>) {
    check_item_kind(cx, aggregate);
    check_name(cx, aggregate);
    if aggregate.events_given {
        events::check_not_empty(cx, &aggregate.events, "aggregate");
    }
    events::check_listed_once(cx, &aggregate.events);
    events::check_concrete(
        cx,
        &aggregate.events,
        aggregate.input,
        "its event enum is not generic",
    );
    check_snapshots(cx, aggregate);
}

/// An aggregate's state is a struct or an enum.
fn check_item_kind(cx: &Ctxt, aggregate: &Aggregate<'_>) {
    parse::reject_union(
        cx,
        aggregate.input,
        "Aggregate",
        "use a struct or an enum for the state",
    );
}

/// The name is the category of its streams: ASCII letters, digits, `_` and `.`, starting with a
/// letter. Such a name is written unchanged in stream ids (`account-42`), and holds no `-`, the
/// character that ends the category there.
fn check_name(cx: &Ctxt, aggregate: &Aggregate<'_>) {
    if !aggregate.name_given {
        return;
    }
    let value = aggregate.name.value();
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let message = match value.chars().find(|&c| !allowed(c)) {
        _ if value.is_empty() => {
            "the aggregate `name` cannot be empty: it is the category of its streams".to_owned()
        }
        Some('-') => format!(
            "an aggregate `name` cannot contain `-`: it ends the name in stream ids (`{value}-42`); use ASCII letters, digits, `_` and `.`, e.g. `{}`",
            value.replace('-', "_")
        ),
        Some(c) if c.is_whitespace() => "an aggregate `name` cannot contain whitespace: use ASCII letters, digits, `_` and `.`, e.g. `bank_account`".to_owned(),
        Some(c) => format!(
            "`{}` cannot be in an aggregate `name`: use ASCII letters, digits, `_` and `.`, starting with a letter",
            c.escape_debug()
        ),
        None if !value.starts_with(|c: char| c.is_ascii_alphabetic()) => format!(
            "an aggregate `name` starts with an ASCII letter: `{value}` starts with `{}`",
            &value[..1]
        ),
        None => return,
    };
    cx.error_spanned_by(&aggregate.name, message);
}

/// `snapshot_every` is at least 1, and `snapshot_version` (a schema version, from 1) only
/// means something when snapshots are taken.
fn check_snapshots(cx: &Ctxt, aggregate: &Aggregate<'_>) {
    if let Some(s) = &aggregate.snapshots {
        if s.every == 0 {
            cx.error_spanned_by(
                &s.every_lit,
                "`snapshot_every = 0` would snapshot never: remove `snapshot_every` to disable snapshots, or give a number of events such as 100",
            );
        }
    }
    if let Some((key, version, lit)) = &aggregate.snapshot_version {
        if aggregate.snapshots.is_none() {
            cx.error_spanned_by(
                key,
                "`snapshot_version` needs `snapshot_every`: this aggregate takes no snapshots",
            );
        } else if *version == 0 {
            cx.error_spanned_by(lit, "snapshot versions start at 1");
        }
    }
}
