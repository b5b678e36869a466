//! What `#[derive(DomainEvent)]` emits beside its errors: a stub impl with the shape of the
//! real one, so the user's other code (a `previous` naming this event, an aggregate listing
//! it) type-checks and the user sees the real mistake, not a cascade.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;
use crate::parse;

use super::ast::Event;

/// The errors in `cx`, and the stubs.
pub(crate) fn emit(cx: Ctxt, event: &Event<'_>) -> TokenStream {
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
