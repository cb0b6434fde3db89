//! Applying a rule's HTTPRouteFilters to a request, in list order (HTTPRouteRule.filters:
//! "implementations SHOULD implement filters in the order they are specified"), rule filters
//! first and then those of the chosen backendRef.
//!
//! Request header modifications happen at once; the rest is collected for later steps: URL
//! rewrites when the upstream request is built, mirrors once its headers are final, response
//! header modifications and CORS headers when the response comes back. A redirect or a CORS
//! preflight answers the request right away.

use gateway_api::apis::standard::httproutes::HttpRouteRulesFiltersCors;
use http::header::{HeaderMap, HeaderValue, LOCATION};
use http::{Method, Response};

use super::body::{self, ProxyBody};
use super::cors;
use super::error::ProxyError;
use crate::route::{Filter, HeaderModifier, PathModifier, RedirectRequest, RequestMirror};

/// What the filters left for the later steps of the request.
#[derive(Debug, Default)]
pub struct Applied<'m> {
    /// ResponseHeaderModifiers, in order.
    pub response_headers: Vec<&'m HeaderModifier>,
    /// URLRewrite hostname: "the value to be used to replace the Host header value during
    /// forwarding".
    pub rewrite_host: Option<&'m str>,
    /// URLRewrite path.
    pub rewrite_path: Option<&'m PathModifier>,
    /// RequestMirrors ("This filter can be used multiple times within the same rule").
    pub mirrors: Vec<&'m RequestMirror>,
    /// The CORS filter, whose headers go on the response.
    pub cors: Option<&'m HttpRouteRulesFiltersCors>,
}

/// The request, as the filters see it.
pub struct FilterRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request headers, modified in place by RequestHeaderModifier.
    pub headers: &'a mut HeaderMap,
    /// What a RequestRedirect needs.
    pub redirect: RedirectRequest<'a>,
}

impl<'m> Applied<'m> {
    /// Applies `filters` to `req`. `Ok(Some(response))` when a filter answers the request
    /// itself (a redirect, a CORS preflight).
    pub fn apply(
        &mut self,
        filters: &'m [Filter],
        req: &mut FilterRequest<'_>,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        for filter in filters {
            match filter {
                Filter::RequestHeaderModifier(m) => m.apply(req.headers),
                Filter::ResponseHeaderModifier(m) => self.response_headers.push(m),
                Filter::RequestRedirect(redirect) => {
                    let location = redirect.location(&req.redirect);
                    let location = HeaderValue::from_str(&location)
                        .map_err(|_| ProxyError::BadRequest(format!("redirect to {location:?}")))?;
                    let mut response = Response::new(body::empty());
                    *response.status_mut() = redirect.status;
                    response.headers_mut().insert(LOCATION, location);
                    return Ok(Some(self.finish(response, req.headers)));
                }
                Filter::UrlRewrite(rewrite) => {
                    if let Some(host) = &rewrite.hostname {
                        self.rewrite_host = Some(host);
                    }
                    if let Some(path) = &rewrite.path {
                        self.rewrite_path = Some(path);
                    }
                }
                Filter::RequestMirror(mirror) => self.mirrors.push(mirror),
                Filter::Cors(c) => {
                    // GEP-1767: the gateway answers preflight requests itself.
                    if cors::is_preflight(req.method, req.headers) {
                        let response = cors::preflight(c, req.headers);
                        return Ok(Some(self.finish(response, req.headers)));
                    }
                    self.cors = Some(c);
                }
                Filter::ExtensionRef { group, kind, name } => {
                    return Err(ProxyError::UnsupportedFilter {
                        group: group.clone(),
                        kind: kind.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
        Ok(None)
    }

    /// Applies the collected response modifications to `response`; `request` is the
    /// request's headers (for CORS, which answers the request's `Origin`).
    pub fn finish(
        &self,
        mut response: Response<ProxyBody>,
        request: &HeaderMap,
    ) -> Response<ProxyBody> {
        for m in &self.response_headers {
            m.apply(response.headers_mut());
        }
        if let Some(c) = self.cors {
            cors::add_response_headers(c, request, response.headers_mut());
        }
        response
    }

    /// The forwarded path: the request's, or the URLRewrite's, with the query kept.
    pub fn path_and_query(
        &self,
        path: &str,
        query: Option<&str>,
        matched_prefix: Option<&str>,
    ) -> String {
        let mut out = match self.rewrite_path {
            Some(m) => m.apply(path, matched_prefix),
            None => path.to_owned(),
        };
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{RequestRedirect, Scheme, UrlRewrite};
    use http::StatusCode;
    use http::header::HeaderName;

    fn redirect_request() -> RedirectRequest<'static> {
        RedirectRequest {
            scheme: Scheme::Http,
            host: "example.com:8080",
            listener_port: 8080,
            path: "/old/x",
            query: Some("a=1"),
            matched_prefix: Some("/old"),
        }
    }

    fn modifier(name: &'static str, value: &'static str) -> HeaderModifier {
        HeaderModifier {
            set: vec![(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )],
            ..Default::default()
        }
    }

    #[test]
    fn filters_apply_in_order_and_a_redirect_answers() {
        let filters = vec![
            Filter::RequestHeaderModifier(modifier("x-a", "1")),
            Filter::ResponseHeaderModifier(modifier("x-resp", "yes")),
            Filter::RequestRedirect(RequestRedirect {
                scheme: Some(Scheme::Https),
                hostname: None,
                path: Some(PathModifier::ReplacePrefixMatch("/new".into())),
                port: None,
                status: StatusCode::MOVED_PERMANENTLY,
            }),
            Filter::RequestHeaderModifier(modifier("x-b", "never")),
        ];
        let mut headers = HeaderMap::new();
        let mut applied = Applied::default();
        let response = applied
            .apply(
                &filters,
                &mut FilterRequest {
                    method: &Method::GET,
                    headers: &mut headers,
                    redirect: redirect_request(),
                },
            )
            .unwrap()
            .expect("redirect answers");
        assert_eq!(response.status(), 301);
        assert_eq!(
            response.headers()[LOCATION],
            "https://example.com/new/x?a=1"
        );
        assert_eq!(response.headers()["x-resp"], "yes");
        assert_eq!(headers["x-a"], "1");
        assert!(!headers.contains_key("x-b"));
    }

    #[test]
    fn rewrites_are_collected_and_extension_refs_fail() {
        let filters = vec![Filter::UrlRewrite(UrlRewrite {
            hostname: Some("internal".into()),
            path: Some(PathModifier::ReplacePrefixMatch("/".into())),
        })];
        let mut headers = HeaderMap::new();
        let mut applied = Applied::default();
        let mut req = FilterRequest {
            method: &Method::GET,
            headers: &mut headers,
            redirect: redirect_request(),
        };
        assert!(applied.apply(&filters, &mut req).unwrap().is_none());
        assert_eq!(applied.rewrite_host, Some("internal"));
        assert_eq!(
            applied.path_and_query("/old/x", Some("a=1"), Some("/old")),
            "/x?a=1"
        );
        let ext = vec![Filter::ExtensionRef {
            group: "example.com".into(),
            kind: "Auth".into(),
            name: "a".into(),
        }];
        let err = applied.apply(&ext, &mut req).unwrap_err();
        assert_eq!(err.status(), 500);
    }
}
