//! The typed model of one `#[derive(DomainEvent)]` item, keeping the user's tokens for spans.

use proc_macro2::Span;
use syn::{LitInt, LitStr};

use crate::ctxt::Ctxt;
use crate::krate::Krate;
use crate::parse::{self, Slot};
use crate::symbol::{self, Symbol};

/// How versions older than [`Event::version`] decode.
pub(crate) enum Older {
    /// No older version decodes.
    None,
    /// `previous = Type`: decode as that type, then convert.
    Previous { key: syn::Path, ty: syn::Type },
    /// `upcast_json = path`: transform the raw JSON, then decode as this type.
    UpcastJson { key: syn::Path, func: syn::Path },
}

pub(crate) struct Event<'a> {
    pub(crate) input: &'a syn::DeriveInput,
    pub(crate) krate: Krate,
    /// The stored type name; an empty placeholder when missing (already reported).
    pub(crate) name: LitStr,
    /// Whether `name` was given (a missing one is already reported).
    pub(crate) name_given: bool,
    pub(crate) version: u32,
    /// The literal of `version = N`, absent when defaulted to 1.
    pub(crate) version_lit: Option<LitInt>,
    pub(crate) aliases: Vec<LitStr>,
    pub(crate) older: Older,
    /// Both `previous` and `upcast_json` were given (reported by validation).
    pub(crate) conflicting_older: Option<syn::Path>,
}

impl<'a> Event<'a> {
    pub(crate) fn from_ast(cx: &Ctxt, input: &'a syn::DeriveInput) -> Self {
        const ATTR: Symbol = symbol::EVENT;
        let mut name = Slot::new(ATTR, symbol::NAME);
        let mut version = Slot::new(ATTR, symbol::VERSION);
        let mut previous = Slot::new(ATTR, symbol::PREVIOUS);
        let mut upcast_json = Slot::new(ATTR, symbol::UPCAST_JSON);
        let mut krate = Slot::new(ATTR, symbol::CRATE);
        let mut aliases = Vec::new();

        let seen = parse::parse_attrs(cx, &input.attrs, ATTR, symbol::EVENT_KEYS, |key, meta| {
            match key {
                symbol::NAME => name.set(
                    cx,
                    &meta.path,
                    parse::lit_str(meta, key, "\"account.opened\"")?,
                ),
                symbol::VERSION => {
                    version.set(cx, &meta.path, parse::lit_int::<u32>(meta, key, "2")?)
                }
                symbol::PREVIOUS => {
                    previous.set(cx, &meta.path, parse::ty(meta, key, "DepositedV1")?)
                }
                symbol::UPCAST_JSON => {
                    upcast_json.set(cx, &meta.path, parse::path(meta, key, "upcast_v1")?);
                }
                symbol::ALIAS => {
                    if meta.input.peek(syn::token::Paren) {
                        let (_, list) =
                            parse::list::<LitStr>(meta, key, "(\"old.name\", \"older.name\")")?;
                        aliases.extend(list);
                    } else {
                        aliases.push(parse::lit_str(meta, key, "\"old.name\"")?);
                    }
                }
                _ => krate.set(cx, &meta.path, parse::crate_path(meta, key)?),
            }
            Ok(())
        });

        let attr_span = seen.span;
        let name_given = name.get().is_some();
        let name = match name.get() {
            Some(name) => name.clone(),
            None => {
                let span = attr_span.unwrap_or_else(|| input.ident.span());
                if !seen.has(symbol::NAME) {
                    missing_name(cx, span, attr_span.is_some());
                }
                LitStr::new("", span)
            }
        };
        let (version, version_lit) = match version.take() {
            Some((_, (n, lit))) => (n, Some(lit)),
            None => (1, None),
        };
        let (older, conflicting_older) = match (previous.take(), upcast_json.take()) {
            (Some((key, ty)), Some((other, _))) => (Older::Previous { key, ty }, Some(other)),
            (Some((key, ty)), None) => (Older::Previous { key, ty }, None),
            (None, Some((key, func))) => (Older::UpcastJson { key, func }, None),
            (None, None) => (Older::None, None),
        };
        Event {
            input,
            krate: Krate::new(cx, krate.take().map(|(_, p)| p)),
            name,
            name_given,
            version,
            version_lit,
            aliases,
            older,
            conflicting_older,
        }
    }
}

fn missing_name(cx: &Ctxt, span: Span, has_attr: bool) {
    if has_attr {
        cx.error_at(
            span,
            "missing `name` in `#[event(...)]`: add `name = \"...\"`, the type name the store records",
        );
    } else {
        cx.error_at(
            span,
            "`DomainEvent` needs `#[event(name = \"...\")]`: the type name the store records for this event",
        );
    }
}
