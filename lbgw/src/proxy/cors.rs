//! The HTTPRoute CORS filter (GEP-1767): answering preflight requests and adding the CORS
//! response headers to actual requests from allowed origins.

use gateway_api::apis::standard::httproutes::HttpRouteRulesFiltersCors;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderValue, ORIGIN,
    VARY,
};
use http::{Method, Response, StatusCode};

use super::body::{self, ProxyBody};

/// HttpRouteRulesFiltersCors.maxAge: "When the `MaxAge` field is unspecified, the gateway
/// sets the response header "Access-Control-Max-Age: 5" by default."
const DEFAULT_MAX_AGE: i32 = 5;

/// Whether the request is a CORS preflight (Fetch §3.2.2: an OPTIONS request with `Origin`
/// and `Access-Control-Request-Method`).
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight request. allowOrigins: "If the request `Origin` does not match
/// the configured allowed origins, the gateway returns 204/200 response but doesn't set the
/// relevant cross-origin response headers."
pub fn preflight(cors: &HttpRouteRulesFiltersCors, headers: &HeaderMap) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    out.insert(VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = allowed_origin(cors, headers) else {
        return response;
    };
    let credentials = cors.allow_credentials == Some(true);
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if credentials {
        out.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    // allowMethods / allowHeaders: with "*" and a credentialed request the gateway "must
    // specify ... the same as the Access-Control-Request-Method/-Headers header provided by
    // the client", and omits the header when the client sent none.
    let list = |configured: &Option<Vec<String>>, requested: Option<&HeaderValue>| {
        let configured = configured.as_deref().filter(|c| !c.is_empty())?;
        if configured.iter().any(|c| c == "*") {
            return if credentials {
                requested.cloned()
            } else {
                Some(HeaderValue::from_static("*"))
            };
        }
        HeaderValue::from_str(&configured.join(", ")).ok()
    };
    if let Some(methods) = list(
        &cors.allow_methods,
        headers.get(ACCESS_CONTROL_REQUEST_METHOD),
    ) {
        out.insert(ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    if let Some(allowed) = list(
        &cors.allow_headers,
        headers.get(ACCESS_CONTROL_REQUEST_HEADERS),
    ) {
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, allowed);
    }
    let max_age = cors.max_age.unwrap_or(DEFAULT_MAX_AGE);
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(max_age));
    response
}

/// Adds the CORS headers for an actual (not preflight) request to its response.
pub fn add_response_headers(
    cors: &HttpRouteRulesFiltersCors,
    request: &HeaderMap,
    response: &mut HeaderMap,
) {
    let Some(origin) = allowed_origin(cors, request) else {
        return;
    };
    let credentials = cors.allow_credentials == Some(true);
    response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    response.append(VARY, HeaderValue::from_static("Origin"));
    if credentials {
        response.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    // exposeHeaders: "The `Access-Control-Expose-Headers` response header can only use `*`
    // wildcard as value when the request is not credentialed."
    let expose: Vec<&str> = cors
        .expose_headers
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|h| !(credentials && *h == "*"))
        .collect();
    if let Ok(value) = HeaderValue::from_str(&expose.join(", "))
        && !expose.is_empty()
    {
        response.insert(ACCESS_CONTROL_EXPOSE_HEADERS, value);
    }
}

/// The `Access-Control-Allow-Origin` value for the request's `Origin`, when allowed. It is
/// always the request's origin, never `*`: allowOrigins allows echoing the origin in every
/// case, and a credentialed request requires it.
fn allowed_origin(cors: &HttpRouteRulesFiltersCors, headers: &HeaderMap) -> Option<HeaderValue> {
    let value = headers.get(ORIGIN)?;
    let origin = Origin::parse(value.to_str().ok()?)?;
    cors.allow_origins
        .iter()
        .flatten()
        .any(|allowed| origin.allowed_by(allowed))
        .then(|| value.clone())
}

/// `<scheme>://<host>(:<port>)`, with the port defaulted from the scheme.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(value: &str) -> Option<Self> {
        let (scheme, rest) = value.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let rest = rest.trim_end_matches('/');
        // An IPv6 literal is bracketed (RFC 3986 §3.2.2) and has colons of its own.
        let port_sep = match rest.rfind(']') {
            Some(end) => rest[end..].find(':').map(|i| end + i),
            None => rest.rfind(':'),
        };
        let (host, port) = match port_sep {
            Some(i) => (&rest[..i], rest[i + 1..].parse().ok()?),
            None => (rest, default),
        };
        (!host.is_empty()).then(|| Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// allowOrigins: "`*` is a greedy match to the _left_, including any number of DNS labels
    /// to the left of its position" and "An origin value that includes _only_ the `*`
    /// character indicates requests from all `Origin`s are allowed."
    fn allowed_by(&self, allowed: &str) -> bool {
        if allowed == "*" {
            return true;
        }
        let Some(pattern) = Origin::parse(allowed) else {
            return false;
        };
        if pattern.scheme != self.scheme || pattern.port != self.port {
            return false;
        }
        match pattern.host.strip_prefix('*') {
            Some("") => true,
            Some(suffix) => self.host.len() > suffix.len() && self.host.ends_with(suffix),
            None => pattern.host == self.host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> HttpRouteRulesFiltersCors {
        HttpRouteRulesFiltersCors {
            allow_origins: Some(origins.iter().map(|s| s.to_string()).collect()),
            allow_credentials: Some(credentials),
            allow_methods: Some(vec!["GET".into(), "PUT".into()]),
            allow_headers: Some(vec!["*".into()]),
            expose_headers: Some(vec!["x-total".into(), "*".into()]),
            max_age: None,
        }
    }

    fn request(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        h.insert(
            ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-a"),
        );
        h
    }

    #[test]
    fn origins_match_with_default_ports_and_left_wildcards() {
        let o = Origin::parse("https://a.b.example.com").unwrap();
        assert!(o.allowed_by("https://*.example.com"));
        assert!(o.allowed_by("https://a.b.example.com:443"));
        assert!(!o.allowed_by("http://a.b.example.com"));
        assert!(!o.allowed_by("https://a.b.example.com:8443"));
        assert!(
            !Origin::parse("https://example.com")
                .unwrap()
                .allowed_by("https://*.example.com")
        );
        assert!(o.allowed_by("*"));
    }

    #[test]
    fn preflight_from_an_allowed_origin_gets_the_cors_headers() {
        let response = preflight(
            &cors(&["https://*.example.com"], true),
            &request("https://app.example.com"),
        );
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET, PUT");
        // Credentialed with "*": the requested headers, not the wildcard.
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "x-a");
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "5");
    }

    #[test]
    fn preflight_from_another_origin_gets_no_cors_headers() {
        let response = preflight(
            &cors(&["https://*.example.com"], false),
            &request("https://evil.test"),
        );
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(!response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
    }

    #[test]
    fn actual_requests_get_origin_and_expose_headers() {
        let mut out = HeaderMap::new();
        add_response_headers(
            &cors(&["*"], false),
            &request("http://x.test:8080"),
            &mut out,
        );
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "http://x.test:8080");
        assert_eq!(out[ACCESS_CONTROL_EXPOSE_HEADERS], "x-total, *");
        let mut out = HeaderMap::new();
        add_response_headers(&cors(&["*"], true), &request("http://x.test"), &mut out);
        assert_eq!(out[ACCESS_CONTROL_EXPOSE_HEADERS], "x-total");
    }
}
