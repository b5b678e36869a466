//! The `impl DomainEvent` of a validated event. Cannot fail.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::assert::const_assert;
use crate::parse;

use super::ast::{Event, Older};

pub(crate) fn expand(event: &Event<'_>) -> TokenStream {
    let krate = event.krate.call_site();
    let ident = &event.input.ident;
    let name = &event.name;
    let version = event.version;
    let aliases = &event.aliases;
    let generic = is_generic(&event.input.generics);

    let self_at_ident = quote_spanned!(ident.span()=> Self);
    let krate_at_ident = event.krate.at(ident.span());
    let mut bounds = vec![
        quote!(Self: ::core::marker::Send + ::core::marker::Sync + 'static),
        quote!(Self: #krate::__private::EventDecode),
    ];
    let mut checks = TokenStream::new();
    let older = match &event.older {
        Older::None => None,
        Older::Previous { ty, .. } => {
            let span = ty.span();
            let k = event.krate.at(span);
            let self_at_ty = quote_spanned!(span=> Self);
            bounds.push(quote!(#ty: #krate::DomainEvent));
            bounds.push(quote!(Self: #krate::__private::UpcastFrom<#ty>));
            checks.extend(previous_checks(event, ty, generic));
            // The calls take the `previous` type's span (a missing conversion is reported
            // there), their arguments do not: locals stay call-site, so they resolve whatever
            // hygiene `ty` carries.
            let args = quote!(__version, __payload);
            let decode = quote_spanned!(span=> <#ty as #k::DomainEvent>::decode(#args));
            let args = quote!(__previous, #name, <#ty as #krate::DomainEvent>::VERSION, #version);
            let upcast = quote_spanned!(span=> <#self_at_ty as #k::__private::UpcastFrom<#ty>>::upcast_from(#args));
            Some(quote! {
                match #decode {
                    ::core::result::Result::Ok(__previous) => #upcast,
                    ::core::result::Result::Err(__error) => {
                        ::core::result::Result::Err(#krate::__private::from_chain(__error, #version))
                    }
                }
            })
        }
        Older::UpcastJson { func, .. } => {
            let k = event.krate.at(func.span());
            let args = quote!(#name, __version, #version, __payload, #func);
            let upcast = quote_spanned!(func.span()=> #k::__private::upcast_json(#args));
            Some(quote! {
                match #upcast {
                    ::core::result::Result::Ok(__value) => {
                        <#self_at_ident as #krate_at_ident::__private::EventDecode>::decode_event_value(#name, __version, __value)
                    }
                    ::core::result::Result::Err(__error) => ::core::result::Result::Err(__error),
                }
            })
        }
    };
    let older = older.map(|decode| {
        quote! {
            else if __version < #version {
                #decode
            }
        }
    });

    let generics = parse::impl_generics(&event.input.generics, &bounds);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let (body_checks, item_checks) = if generic {
        (checks, TokenStream::new())
    } else {
        (TokenStream::new(), checks)
    };

    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::DomainEvent for #ident #ty_generics #where_clause {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;
                const ALIASES: &'static [&'static str] = &[#(#aliases),*];

                #[inline]
                fn decode(
                    __version: u32,
                    __payload: &[u8],
                ) -> ::core::result::Result<Self, #krate::DecodeError> {
                    #body_checks
                    if __version == #version {
                        <#self_at_ident as #krate_at_ident::__private::EventDecode>::decode_event(#name, __version, __payload)
                    }
                    #older
                    else {
                        ::core::result::Result::Err(#krate::__private::unsupported_version(#name, __version, #version))
                    }
                }
            }
            #item_checks
        };
    }
}

/// The link to the previous version: its version is the one directly below (a lower one
/// leaves the versions between without a type, and their stored events without a decoding),
/// and it is stored under this event's name or one of its aliases (otherwise the aggregate
/// would never route its stored events here).
fn previous_checks(event: &Event<'_>, previous: &syn::Type, generic: bool) -> TokenStream {
    let krate = event.krate.call_site();
    let version = event.version;
    let name = &event.name;
    let aliases = &event.aliases;
    let ident = &event.input.ident;
    let prev_text = quote!(#previous).to_string().replace(' ', "");
    let span = previous.span();
    let previous_type = crate::events::event_type(&krate, previous);
    let lower = const_assert(
        span,
        quote!(<#previous as #krate::DomainEvent>::VERSION < #version),
        &format!(
            "the `previous` version of `{ident}` must have a lower `version`: `{prev_text}` is not older than version {version}"
        ),
        generic,
    );
    let below = version - 1;
    let directly_below = const_assert(
        span,
        quote! {
            <#previous as #krate::DomainEvent>::VERSION >= #version
                || <#previous as #krate::DomainEvent>::VERSION == #below
        },
        &format!(
            "the `previous` of `{ident}` (version {version}) must be its version {below}: `{prev_text}` is older, so stored version {below} events would not decode (name the version {below} type, whose own `previous` leads further down)"
        ),
        generic,
    );
    let same_name = const_assert(
        span,
        quote! {
            #krate::__private::names_overlap(
                #previous_type,
                #krate::__private::EventType { name: #name, version: #version, aliases: &[#(#aliases),*] },
            )
        },
        &format!(
            "`{prev_text}` is stored under another name than `{ident}`: a previous version keeps the event's `name` (after a rename, add the old name as an `alias`)"
        ),
        generic,
    );
    quote!(#lower #directly_below #same_name)
}

pub(crate) fn is_generic(generics: &syn::Generics) -> bool {
    generics.type_params().next().is_some() || generics.const_params().next().is_some()
}
