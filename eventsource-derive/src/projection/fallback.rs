//! What `#[derive(Projection)]` emits beside its errors: stub impls, so the user's other code
//! (its `impl Handle<E>`s) type-checks and the user sees the real mistake, not a cascade.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;
use crate::parse;

use super::ast::Projection;
use super::expand;

/// The errors in `cx`, and the stubs.
pub(crate) fn emit(cx: Ctxt, projection: &Projection<'_>) -> TokenStream {
    let errors = cx.into_compile_errors();
    let krate = projection.krate.call_site();
    let ident = &projection.input.ident;
    let name = &projection.name;
    let context = expand::context(projection);
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
