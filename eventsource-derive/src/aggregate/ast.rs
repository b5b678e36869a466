//! The typed model of one `#[derive(Aggregate)]` item.

use syn::{LitInt, LitStr};

use crate::ctxt::Ctxt;
use crate::events::{EventList, Listed};
use crate::krate::Krate;
use crate::parse::{self, Slot};
use crate::symbol::{self, Symbol};

pub(crate) struct Snapshots {
    /// The `snapshot_every` key, where a missing serde impl is reported.
    pub(crate) key: syn::Path,
    pub(crate) every: u64,
    pub(crate) every_lit: LitInt,
}

pub(crate) struct Aggregate<'a> {
    pub(crate) input: &'a syn::DeriveInput,
    pub(crate) krate: Krate,
    /// The stream category; an empty placeholder when missing (already reported).
    pub(crate) name: LitStr,
    pub(crate) name_given: bool,
    /// Empty when missing (already reported).
    pub(crate) events: EventList,
    /// Whether `events(...)` parsed.
    pub(crate) events_given: bool,
    pub(crate) event_enum: syn::Ident,
    pub(crate) snapshots: Option<Snapshots>,
    pub(crate) snapshot_version: Option<(syn::Path, u32, LitInt)>,
}

impl<'a> Aggregate<'a> {
    pub(crate) fn from_ast(cx: &Ctxt, input: &'a syn::DeriveInput) -> Self {
        const ATTR: Symbol = symbol::AGGREGATE;
        let mut name = Slot::new(ATTR, symbol::NAME);
        let mut events = Slot::new(ATTR, symbol::EVENTS);
        let mut every = Slot::new(ATTR, symbol::SNAPSHOT_EVERY);
        let mut snapshot_version = Slot::new(ATTR, symbol::SNAPSHOT_VERSION);
        let mut event_enum = Slot::new(ATTR, symbol::EVENT_ENUM);
        let mut krate = Slot::new(ATTR, symbol::CRATE);

        let seen = parse::parse_attrs(
            cx,
            &input.attrs,
            ATTR,
            symbol::AGGREGATE_KEYS,
            |key, meta| {
                match key {
                    symbol::NAME => {
                        name.set(cx, &meta.path, parse::lit_str(meta, key, "\"account\"")?)
                    }
                    symbol::EVENTS => {
                        let (span, types) = parse::type_list(cx, meta, key, "(Opened, Deposited)")?;
                        events.set(cx, &meta.path, EventList::new(cx, span, types));
                    }
                    symbol::SNAPSHOT_EVERY => {
                        every.set(cx, &meta.path, parse::lit_int::<u64>(meta, key, "100")?)
                    }
                    symbol::SNAPSHOT_VERSION => {
                        snapshot_version.set(
                            cx,
                            &meta.path,
                            parse::lit_int::<u32>(meta, key, "2")?,
                        );
                    }
                    symbol::EVENT_ENUM => {
                        event_enum.set(cx, &meta.path, parse::ident(meta, key, "AccountEvent")?)
                    }
                    _ => krate.set(cx, &meta.path, parse::crate_path(meta, key)?),
                }
                Ok(())
            },
        );
        let attr_span = seen.span;
        let span = attr_span.unwrap_or_else(|| input.ident.span());
        if attr_span.is_none() {
            cx.error_at(
                span,
                "`Aggregate` needs `#[aggregate(name = \"...\", events(...))]`: the stream category and the events it folds",
            );
        }

        let (name, name_given) =
            seen.required(cx, name, span, "missing `name` in `#[aggregate(...)]`: add `name = \"...\"`, the category of its streams", || LitStr::new("", span));
        let (events, events_given) = seen.required(cx, events, span, "missing `events(...)` in `#[aggregate(...)]`: list the events this aggregate folds, e.g. `events(Opened, Deposited)`", || EventList {
            span,
            events: Vec::new(),
        });
        let event_enum = event_enum
            .take()
            .map(|(_, ident)| ident)
            .unwrap_or_else(|| quote::format_ident!("{}Event", input.ident));
        Aggregate {
            input,
            krate: Krate::new(cx, krate.take().map(|(_, p)| p)),
            name,
            name_given,
            events,
            events_given,
            event_enum,
            snapshots: every.take().map(|(key, (every, every_lit))| Snapshots {
                key,
                every,
                every_lit,
            }),
            snapshot_version: snapshot_version.take().map(|(key, (v, lit))| (key, v, lit)),
        }
    }
}

impl Aggregate<'_> {
    /// The events that become variants of the event enum: the first listed event of each
    /// variant name (a later one with the same name is reported by a const assertion, which
    /// needs the events' stored identities to tell what went wrong).
    pub(crate) fn variants(&self) -> Vec<&Listed> {
        let mut variants: Vec<&Listed> = Vec::with_capacity(self.events.events.len());
        for e in &self.events.events {
            if !variants.iter().any(|v| v.variant == e.variant) {
                variants.push(e);
            }
        }
        variants
    }
}
