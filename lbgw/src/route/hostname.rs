//! Hostnames of listeners and routes: matching a request's host, intersecting a listener's
//! hostname with a route's, and the two precedence orders the spec defines over them.
//!
//! Everything here is lower-case: the spec's hostnames are RFC 1123 names (validation allows
//! only lower case) and DNS names compare case-insensitively, so request hosts are lower-cased
//! by [`normalize_host`] before they are compared.

use std::borrow::Cow;
use std::fmt;

/// A hostname from a Gateway listener or an HTTPRoute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Hostname {
    /// No hostname (a listener without `hostname`, or a route without `hostnames` on such a
    /// listener): matches every host.
    Any,
    /// A precise name such as `foo.example.com`.
    Exact(String),
    /// `*.example.com`, kept as its suffix `.example.com`: matches hosts with one or more
    /// labels before the suffix, never the suffix's apex `example.com`.
    Wildcard(String),
}

/// How specifically a route hostname matched a request host; larger is more specific.
///
/// HTTPRouteSpec.hostnames: "precedence must be given to rules from the HTTPRoute with the
/// largest number of: Characters in a matching non-wildcard hostname. Characters in a
/// matching hostname." The variant order encodes that: any exact match beats any wildcard
/// match, which beats a route that matches every host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum HostScore {
    Any,
    /// Characters in the wildcard hostname, `*.` included.
    Wildcard(usize),
    /// Characters in the exact hostname.
    Exact(usize),
}

/// How specifically a listener hostname matched a request host; larger is more specific.
///
/// GatewaySpec.listeners: "Exact matches MUST be processed before wildcard matches, and
/// wildcard matches MUST be processed before fallback (empty Hostname value) matches" and
/// "the higher the number of dots in the hostname to the right of the wildcard character,
/// the higher the precedence."
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ListenerScore {
    Any,
    /// Dots to the right of the `*`.
    Wildcard(usize),
    Exact,
}

impl Hostname {
    /// Parses a configured hostname. An empty value or a lone `*` is [`Hostname::Any`].
    pub fn parse(value: &str) -> Self {
        let value = value.to_ascii_lowercase();
        match value.as_str() {
            "" | "*" => Self::Any,
            _ => match value.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => Self::Wildcard(suffix.to_owned()),
                _ => Self::Exact(value),
            },
        }
    }

    /// Whether this hostname matches `host`, which must already be normalized by
    /// [`normalize_host`].
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(name) => name == host,
            // HTTPRouteSpec.hostnames: "a match for `*.example.com` would match both
            // `test.example.com`, and `foo.test.example.com`, but not `example.com`." The
            // length check keeps at least one character (so one label) before the suffix.
            Self::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }

    /// The hostnames matched by both `listener` and `route`, or `None` when they are disjoint.
    ///
    /// Of two overlapping names the more specific one is the intersection: `*.example.com`
    /// and `foo.example.com` give `foo.example.com`; `*.example.com` and `*.com` give
    /// `*.example.com`.
    pub fn intersect(listener: &Self, route: &Self) -> Option<Self> {
        match (listener, route) {
            (Self::Any, other) | (other, Self::Any) => Some(other.clone()),
            (Self::Exact(l), Self::Exact(r)) => (l == r).then(|| listener.clone()),
            (Self::Wildcard(_), Self::Exact(name)) => listener.matches(name).then(|| route.clone()),
            (Self::Exact(name), Self::Wildcard(_)) => route.matches(name).then(|| listener.clone()),
            (Self::Wildcard(l), Self::Wildcard(r)) => {
                if r.ends_with(l.as_str()) {
                    Some(route.clone())
                } else if l.ends_with(r.as_str()) {
                    Some(listener.clone())
                } else {
                    None
                }
            }
        }
    }

    /// The route-precedence score of this hostname when it matches `host`.
    pub(crate) fn route_score(&self, host: &str) -> Option<HostScore> {
        self.matches(host).then(|| match self {
            Self::Any => HostScore::Any,
            Self::Exact(name) => HostScore::Exact(name.len()),
            Self::Wildcard(suffix) => HostScore::Wildcard(suffix.len() + 1),
        })
    }

    /// The listener-precedence score of this hostname when it matches `host`.
    pub(crate) fn listener_score(&self, host: &str) -> Option<ListenerScore> {
        self.matches(host).then(|| match self {
            Self::Any => ListenerScore::Any,
            Self::Exact(_) => ListenerScore::Exact,
            Self::Wildcard(suffix) => ListenerScore::Wildcard(suffix.matches('.').count()),
        })
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(name) => f.write_str(name),
            Self::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// The best route-precedence score among `hostnames` for `host`; an empty list matches any
/// host with the lowest score.
pub(crate) fn best_route_score(hostnames: &[Hostname], host: &str) -> Option<HostScore> {
    if hostnames.is_empty() {
        return Some(HostScore::Any);
    }
    hostnames.iter().filter_map(|h| h.route_score(host)).max()
}

/// Lower-cases a Host header or `:authority` value and drops its port.
///
/// HTTPRouteSpec.hostnames: "Implementations MUST ignore any port value specified in the
/// HTTP Host header while performing a match". A bracketed IPv6 literal keeps its brackets.
pub fn normalize_host(authority: &str) -> Cow<'_, str> {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest
            .find(']')
            .map_or(authority, |end| &authority[..end + 2]),
        None => match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        },
    };
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hostname {
        Hostname::parse(s)
    }

    #[test]
    fn wildcard_matches_one_or_more_labels_never_the_apex() {
        // HTTPRouteSpec.hostnames: "Hostnames that are prefixed with a wildcard label (`*.`)
        // are interpreted as a suffix match. That means that a match for `*.example.com` would
        // match both `test.example.com`, and `foo.test.example.com`, but not `example.com`."
        let w = h("*.example.com");
        assert!(w.matches("test.example.com"));
        assert!(w.matches("foo.test.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches(".example.com"));
        assert!(!w.matches("testexample.com"));
        assert!(!w.matches("test.example.net"));
    }

    #[test]
    fn exact_matches_only_itself() {
        let e = h("Foo.Example.com");
        assert_eq!(e, Hostname::Exact("foo.example.com".into()));
        assert!(e.matches("foo.example.com"));
        assert!(!e.matches("bar.foo.example.com"));
        assert!(!e.matches("example.com"));
    }

    #[test]
    fn empty_and_star_match_everything() {
        assert_eq!(h(""), Hostname::Any);
        assert_eq!(h("*"), Hostname::Any);
        assert!(Hostname::Any.matches("anything.test"));
    }

    #[test]
    fn intersection_with_listener_hostname() {
        // HTTPRouteSpec.hostnames: "A Listener with `test.example.com` as the hostname matches
        // HTTPRoutes that have either not specified any hostnames, or have specified at least
        // one of `test.example.com` or `*.example.com`."
        let l = h("test.example.com");
        assert_eq!(Hostname::intersect(&l, &Hostname::Any), Some(l.clone()));
        assert_eq!(
            Hostname::intersect(&l, &h("test.example.com")),
            Some(l.clone())
        );
        assert_eq!(
            Hostname::intersect(&l, &h("*.example.com")),
            Some(l.clone())
        );
        assert_eq!(Hostname::intersect(&l, &h("other.example.com")), None);

        // "A Listener with `*.example.com` as the hostname matches HTTPRoutes that have either
        // not specified any hostnames or have specified at least one hostname that matches the
        // Listener hostname. For example, `*.example.com`, `test.example.com`, and
        // `foo.test.example.com` would all match. On the other hand, `example.com` and
        // `test.example.net` would not match."
        let l = h("*.example.com");
        for r in ["*.example.com", "test.example.com", "foo.test.example.com"] {
            assert_eq!(Hostname::intersect(&l, &h(r)), Some(h(r)), "{r}");
        }
        for r in ["example.com", "test.example.net"] {
            assert_eq!(Hostname::intersect(&l, &h(r)), None, "{r}");
        }
        // Overlapping wildcards intersect in the more specific one.
        assert_eq!(Hostname::intersect(&l, &h("*.com")), Some(l.clone()));
        assert_eq!(
            Hostname::intersect(&l, &h("*.foo.example.com")),
            Some(h("*.foo.example.com"))
        );
        assert_eq!(Hostname::intersect(&l, &h("*.xexample.com")), None);
        // A listener without hostname takes the route's.
        assert_eq!(
            Hostname::intersect(&Hostname::Any, &h("a.b")),
            Some(h("a.b"))
        );
    }

    #[test]
    fn route_scores_order_exact_then_wildcard_length_then_any() {
        // HTTPRouteSpec.hostnames: "precedence must be given to rules from the HTTPRoute with
        // the largest number of: Characters in a matching non-wildcard hostname. Characters
        // in a matching hostname."
        let host = "a.foo.example.com";
        let exact = h(host).route_score(host).unwrap();
        let long = h("*.foo.example.com").route_score(host).unwrap();
        let short = h("*.example.com").route_score(host).unwrap();
        let any = Hostname::Any.route_score(host).unwrap();
        assert!(exact > long && long > short && short > any);
        assert_eq!(h("*.bar.com").route_score(host), None);
        assert_eq!(
            best_route_score(&[h("*.example.com"), h(host)], host),
            Some(exact)
        );
        assert_eq!(best_route_score(&[], host), Some(HostScore::Any));
        assert_eq!(best_route_score(&[h("x.y")], host), None);
    }

    #[test]
    fn listener_scores_count_dots_right_of_the_wildcard() {
        // GatewaySpec.listeners: "`"*.foo.example.com"` takes precedence over
        // `"*.example.com"`" and "`"foo.example.com"` takes precedence over `"*.example.com"`,
        // and `"*.example.com"` takes precedence over `""`."
        let host = "foo.example.com";
        let exact = h(host).listener_score(host).unwrap();
        let wild = h("*.example.com").listener_score(host).unwrap();
        let any = Hostname::Any.listener_score(host).unwrap();
        assert!(exact > wild && wild > any);
        let deeper = h("*.foo.example.com")
            .listener_score("a.foo.example.com")
            .unwrap();
        assert!(
            deeper
                > h("*.example.com")
                    .listener_score("a.foo.example.com")
                    .unwrap()
        );
    }

    #[test]
    fn request_host_port_is_ignored_and_case_folded() {
        // HTTPRouteSpec.hostnames: "Implementations MUST ignore any port value specified in
        // the HTTP Host header while performing a match".
        assert_eq!(normalize_host("Foo.Example.com:8080"), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com"), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com:"), "foo.example.com");
        assert_eq!(normalize_host("[::1]:443"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert!(matches!(normalize_host("a.b"), Cow::Borrowed(_)));
    }
}
