//! What `#[derive(Aggregate)]` emits beside its errors: stub impls and the event enum, so the
//! user's other code (its `impl Apply<E>`s, uses of the enum) type-checks and the user sees
//! the real mistake, not a cascade.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;
use crate::parse;

use super::ast::Aggregate;
use super::expand;

/// The errors in `cx`, and the stubs.
pub(crate) fn emit(cx: Ctxt, aggregate: &Aggregate<'_>) -> TokenStream {
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
            expand::event_enum(aggregate),
            expand::conversions(aggregate),
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
