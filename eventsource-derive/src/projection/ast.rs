//! The typed model of one `#[derive(Projection)]` item.

use syn::LitStr;

use crate::ctxt::Ctxt;
use crate::events::EventList;
use crate::krate::Krate;
use crate::parse::{self, Slot};
use crate::symbol::{self, Symbol};

pub(crate) struct Projection<'a> {
    pub(crate) input: &'a syn::DeriveInput,
    pub(crate) krate: Krate,
    /// The checkpoint name; an empty placeholder when missing (already reported).
    pub(crate) name: LitStr,
    pub(crate) name_given: bool,
    /// Empty when missing (already reported).
    pub(crate) events: EventList,
    /// Whether `events(...)` parsed.
    pub(crate) events_given: bool,
    /// `context = Type`, `()` by default.
    pub(crate) context: Option<syn::Type>,
    /// `reset = path`: clears the read model before a rebuild.
    pub(crate) reset: Option<syn::Path>,
}

impl<'a> Projection<'a> {
    pub(crate) fn from_ast(cx: &Ctxt, input: &'a syn::DeriveInput) -> Self {
        const ATTR: Symbol = symbol::PROJECTION;
        let mut name = Slot::new(ATTR, symbol::NAME);
        let mut events = Slot::new(ATTR, symbol::EVENTS);
        let mut context = Slot::new(ATTR, symbol::CONTEXT);
        let mut reset = Slot::new(ATTR, symbol::RESET);
        let mut krate = Slot::new(ATTR, symbol::CRATE);

        let seen = parse::parse_attrs(
            cx,
            &input.attrs,
            ATTR,
            symbol::PROJECTION_KEYS,
            |key, meta| {
                match key {
                    symbol::NAME => {
                        name.set(cx, &meta.path, parse::lit_str(meta, key, "\"balances\"")?)
                    }
                    symbol::EVENTS => {
                        let (span, types) = parse::type_list(cx, meta, key, "(Opened, Deposited)")?;
                        events.set(cx, &meta.path, EventList::new(cx, span, types));
                    }
                    symbol::CONTEXT => {
                        context.set(cx, &meta.path, parse::ty(meta, key, "MyContext")?)
                    }
                    symbol::RESET => {
                        reset.set(cx, &meta.path, parse::path(meta, key, "Self::clear")?)
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
                "`Projection` needs `#[projection(name = \"...\", events(...))]`: its checkpoint name and the events it handles",
            );
        }
        let (name, name_given) =
            seen.required(cx, name, span, "missing `name` in `#[projection(...)]`: add `name = \"...\"`, the key of its checkpoint", || LitStr::new("", span));
        let (events, events_given) = seen.required(cx, events, span, "missing `events(...)` in `#[projection(...)]`: list the events this projection handles, e.g. `events(Opened, Deposited)`", || EventList {
            span,
            events: Vec::new(),
        });
        Projection {
            input,
            krate: Krate::new(cx, krate.take().map(|(_, p)| p)),
            name,
            name_given,
            events,
            events_given,
            context: context.take().map(|(_, ty)| ty),
            reset: reset.take().map(|(_, path)| path),
        }
    }
}
