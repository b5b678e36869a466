//! What a derive emits when the user made a mistake: the errors, plus stub impls with the same
//! shape as the real ones, so the rest of the user's code (an `impl Apply<E>`, a use of the
//! event enum) type-checks and the user sees the real mistake, not a cascade.

use proc_macro2::TokenStream;
use quote::quote;

use crate::aggregate::{self, Aggregate};
use crate::ctxt::Ctxt;
use crate::event::Event;
use crate::parse;
use crate::projection::{self, Projection};

pub(crate) fn event(cx: Ctxt, event: &Event<'_>) -> TokenStream {
    let errors = cx.into_compile_errors();
    let krate = event.krate.call_site();
    let ident = &event.input.ident;
    let name = &event.name;
    let version = event.version.max(1);
    let generics = parse::impl_generics(&event.input.generics, &[]);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        #errors
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::DomainEvent for #ident #ty_generics #where_clause {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;
                fn decode(__version: u32, _: &[u8]) -> ::core::result::Result<Self, #krate::DecodeError> {
                    ::core::result::Result::Err(#krate::__private::unsupported_version(#name, __version, #version))
                }
            }
        };
    }
}

pub(crate) fn aggregate(cx: Ctxt, aggregate: &Aggregate<'_>) -> TokenStream {
    let errors = cx.into_compile_errors();
    let krate = aggregate.krate.call_site();
    let ident = &aggregate.input.ident;
    let name = &aggregate.name;
    let event_enum = &aggregate.event_enum;
    // The enum and its conversions, one variant per variant name, so uses of the enum in the
    // user's code type-check.
    let (enum_def, conversions) = if aggregate.events.events.is_empty() {
        let vis = &aggregate.input.vis;
        (quote!(#vis enum #event_enum {}), TokenStream::new())
    } else {
        (
            aggregate::event_enum(aggregate),
            aggregate::conversions(aggregate),
        )
    };
    let generics = parse::impl_generics(&aggregate.input.generics, &[]);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    // A union cannot be `Default`: a stub impl would only add an error.
    let aggregate_impl = (!matches!(aggregate.input.data, syn::Data::Union(_))).then(|| {
        quote! {
            #[automatically_derived]
            impl #impl_generics #krate::Aggregate for #ident #ty_generics #where_clause {
                const NAME: &'static str = #name;
                type Event = #event_enum;
                fn apply_event(&mut self, _: &Self::Event) {}
            }
        }
    });
    quote! {
        #errors
        #enum_def
        const _: () = {
            #conversions

            #[automatically_derived]
            impl #krate::EventSet for #event_enum {
                const EVENT_TYPES: &'static [#krate::EventType] = &[];
                fn event_type(&self) -> &'static str {
                    ""
                }
                fn schema_version(&self) -> u32 {
                    0
                }
                fn encode(&self) -> ::core::result::Result<#krate::__private::Bytes, #krate::EncodeError> {
                    ::core::result::Result::Err(#krate::EncodeError::SnapshotsUnsupported)
                }
                fn decode(__name: &str, __version: u32, _: &[u8]) -> ::core::result::Result<Self, #krate::DecodeError> {
                    ::core::result::Result::Err(#krate::__private::unknown_event(__name, __version))
                }
            }

            #aggregate_impl
        };
    }
}

pub(crate) fn projection(cx: Ctxt, projection: &Projection<'_>) -> TokenStream {
    let errors = cx.into_compile_errors();
    let krate = projection.krate.call_site();
    let ident = &projection.input.ident;
    let name = &projection.name;
    let context = projection::context(projection);
    // Every event counts as listed: the list is wrong or missing, and the user's `Handle`
    // impls should not be reported on top of that.
    let generics = parse::impl_generics(&projection.input.generics, &[]);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let mut any_event = generics.clone();
    any_event.params.push(syn::parse_quote!(__E));
    let (any_event, _, _) = any_event.split_for_impl();
    let lists = quote! {
        #[automatically_derived]
        impl #any_event #krate::ListsEvent<__E> for #ident #ty_generics #where_clause {}
    };
    quote! {
        #errors
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::Projection for #ident #ty_generics #where_clause {
                const NAME: &'static str = #name;
                type Context = #context;
                async fn handle_event(
                    &mut self,
                    _: &#krate::RecordedEvent,
                    _: &mut Self::Context,
                ) -> ::core::result::Result<(), #krate::HandlerError> {
                    ::core::result::Result::Ok(())
                }
            }

            #lists
        };
    }
}
