//! The `impl Projection` of a validated projection: the handled names, the selective decode and
//! the dispatch to `Handle<E>`. Cannot fail.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::events;
use crate::parse;

use super::ast::Projection;

pub(crate) fn expand(projection: &Projection<'_>) -> TokenStream {
    let krate = projection.krate.call_site();
    let ident = &projection.input.ident;
    let name = &projection.name;
    let context = context(projection);
    let list = &projection.events.events;
    let types: Vec<_> = list.iter().map(|e| &e.ty).collect();
    let event_types = types.iter().map(|ty| events::event_type(&krate, ty));
    let handle: Vec<TokenStream> = list
        .iter()
        .map(|e| {
            let (ty, span) = (&e.ty, e.span());
            let k = projection.krate.at(span);
            // The call takes the event's span, its arguments stay call-site (hygiene).
            let args = quote!(self, __e, __event, __ctx);
            quote_spanned!(span=> <Self as #k::Handle<#ty>>::handle(#args))
        })
        .collect();
    let arm = |ty: &syn::Type, handle: &TokenStream| {
        quote! {
            return match <#ty as #krate::DomainEvent>::decode(__event.schema_version, &__event.payload) {
                ::core::result::Result::Ok(__e) => #handle.await,
                ::core::result::Result::Err(__error) => {
                    ::core::result::Result::Err(#krate::__private::handler_error(__error))
                }
            };
        }
    };
    let by_name = types.iter().zip(&handle).map(|(ty, h)| {
        let arm = arm(ty, h);
        quote!(if __name == <#ty as #krate::DomainEvent>::NAME { #arm })
    });
    let by_alias = types.iter().zip(&handle).map(|(ty, h)| {
        let arm = arm(ty, h);
        quote!(if #krate::__private::contains(<#ty as #krate::DomainEvent>::ALIASES, __name) { #arm })
    });
    // Current names first: aliases are the rare case.
    let dispatch = quote!(#(#by_name)* #(#by_alias)*);
    let generics = parse::impl_generics(&projection.input.generics, &[]);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let lists = lists_events(projection);
    let checks = events::identity_checks(&projection.krate, &projection.events, false);
    // The hook is called through a helper whose bound names the signature expected; the call
    // takes the hook's span (errors land there), `self` and locals stay call-site.
    let reset = projection.reset.as_ref().map(|path| {
        let span = path_span(path);
        let k = projection.krate.at(span);
        let args = quote!(#path, self, __ctx);
        let call = quote_spanned!(span=> #k::__private::reset::<Self, Self::Context, _, _>(#args));
        quote! {
            fn reset(
                &mut self,
                __ctx: &mut Self::Context,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<(), #krate::HandlerError>,
            > + ::core::marker::Send {
                #call
            }
        }
    });

    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::Projection for #ident #ty_generics #where_clause {
                const NAME: &'static str = #name;
                type Context = #context;

                fn event_types() -> ::core::option::Option<&'static [&'static str]> {
                    const __TYPES: &[#krate::EventType] = &[#(#event_types,)*];
                    const __COUNT: usize = #krate::__private::stored_name_count(__TYPES);
                    static __NAMES: [&str; __COUNT] = #krate::__private::stored_names::<__COUNT>(__TYPES);
                    ::core::option::Option::Some(&__NAMES)
                }

                fn handle_event(
                    &mut self,
                    __event: &#krate::RecordedEvent,
                    __ctx: &mut Self::Context,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<(), #krate::HandlerError>,
                > + ::core::marker::Send {
                    async move {
                        let __name: &str = &__event.event_type;
                        #dispatch
                        // Not a handled type: the store's filter normally keeps it away.
                        ::core::result::Result::Ok(())
                    }
                }

                #reset
            }

            #lists
            #checks
        };
    }
}

/// `ListsEvent<E>` for each listed event: what lets the user's `Handle<E>` impls exist.
fn lists_events(projection: &Projection<'_>) -> TokenStream {
    let krate = projection.krate.call_site();
    let ident = &projection.input.ident;
    let generics = parse::impl_generics(&projection.input.generics, &[]);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    // Spanned at the listed types, so a message about another impl points at the list.
    projection
        .events
        .events
        .iter()
        .map(|e| {
            let ty = &e.ty;
            quote_spanned! {e.span()=>
                #[automatically_derived]
                impl #impl_generics #krate::ListsEvent<#ty> for #ident #ty_generics #where_clause {}
            }
        })
        .collect()
}

pub(crate) fn context(projection: &Projection<'_>) -> TokenStream {
    match &projection.context {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    }
}

fn path_span(path: &syn::Path) -> proc_macro2::Span {
    path.segments
        .last()
        .map_or_else(proc_macro2::Span::call_site, |s| s.ident.span())
}
