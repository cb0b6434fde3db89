//! The routing table: listeners with the routes attached to them, and the lookup that picks
//! the best match for a request.

use gateway_api::apis::standard::gateways::Gateway;
use gateway_api::apis::standard::httproutes::HttpRoute;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::config::{HttpRouteRetries, ObjectRef};

use super::attach;
use super::error::{BuildError, RouteId};
use super::filters::{RedirectRequest, Scheme};
use super::hostname::{HostScore, Hostname, best_route_score, normalize_host};
use super::index::{Candidates, ListenerIndex, Ordinal};
use super::matches::{MatchScore, PathMatch, Prepared, parse_query};
use super::rule::{self, CompiledRule, Rule};
use super::{ListenerRef, RequestParts};

/// A Gateway listener that carries HTTPRoutes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Namespace of the Gateway.
    pub gateway_namespace: String,
    /// Name of the Gateway.
    pub gateway_name: String,
    /// Listener name, unique within the Gateway.
    pub name: String,
    /// Port the listener serves.
    pub port: u16,
    /// The listener's hostname ([`Hostname::Any`] when unset).
    pub hostname: Hostname,
    /// `http` for an HTTP listener, `https` for HTTPS.
    pub scheme: Scheme,
}

/// The rule a request matched, with what the proxy needs to serve it.
#[derive(Clone, Copy, Debug)]
pub struct Match<'a> {
    /// The HTTPRoute.
    pub route: &'a RouteId,
    /// Index of the rule in the route's `spec.rules`.
    pub rule_index: usize,
    /// Index of the satisfied match in the rule's `matches` (0 for a rule without matches).
    pub match_index: usize,
    /// Filters, backends and timeouts.
    pub rule: &'a Rule,
    /// The listener the request was routed on.
    pub listener: &'a Listener,
    /// The route hostname (intersected with the listener's) that matched the request host.
    pub hostname: &'a Hostname,
    /// The path match that matched.
    pub path: &'a PathMatch,
}

impl Match<'_> {
    /// The PathPrefix value that matched, which ReplacePrefixMatch replaces.
    pub fn matched_prefix(&self) -> Option<&str> {
        self.path.prefix()
    }

    /// What a [`RequestRedirect`](super::RequestRedirect) filter of this rule needs to build
    /// its `Location` for `req`.
    pub fn redirect_request<'r>(&'r self, req: &RequestParts<'r>) -> RedirectRequest<'r> {
        RedirectRequest {
            scheme: self.listener.scheme,
            host: req.host,
            listener_port: self.listener.port,
            path: req.path,
            query: req.query,
            matched_prefix: self.matched_prefix(),
        }
    }
}

/// Precedence of a candidate; the largest wins and the first wins ties.
///
/// Hostname precedence comes first: HTTPRouteSpec.hostnames "If ties exist across multiple
/// Routes, the matching precedence rules for HTTPRouteMatches takes over." Between the
/// intersected and the match scores sits the route's original hostname: "When multiple
/// HTTPRoutes attach to the same Listener and yield identical Listener/Route intersected
/// hostnames, implementations SHOULD evaluate precedence using the original hostnames
/// configured on the Route, not the calculated Listener/Route hostname intersection."
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    host: HostScore,
    original_host: HostScore,
    request: MatchScore,
}

#[derive(Debug)]
struct CompiledRoute {
    id: RouteId,
    /// Route hostnames as configured; empty when the route has none.
    hostnames: Vec<Hostname>,
    rules: Vec<CompiledRule>,
}

#[derive(Debug)]
struct Attached {
    /// Index into [`RouteTable::routes`].
    route: usize,
    /// Route hostnames intersected with the listener's.
    hostnames: Vec<Hostname>,
}

/// The route hostname that matched a request host best, its score, and the score of the
/// route's original hostnames.
type RouteHost<'t> = (&'t Hostname, HostScore, HostScore);

/// One match of one rule of an attached route.
#[derive(Debug)]
struct Candidate {
    /// Index into [`ListenerEntry::routes`].
    attached: usize,
    /// Index into the route's compiled rules.
    rule: usize,
    /// Index into the rule's matches.
    match_index: usize,
}

#[derive(Debug)]
struct ListenerEntry {
    listener: Listener,
    /// In tie-break order: oldest route first, then by namespace/name.
    routes: Vec<Attached>,
    /// Every match of every attached route, in tie-break order ([`Ordinal`]s index it).
    candidates: Vec<Candidate>,
    /// The candidates by hostname and path.
    index: ListenerIndex,
}

impl ListenerEntry {
    /// Adds `route` (attached with `hostnames`) and files its matches in the index.
    fn attach(&mut self, index: usize, route: &CompiledRoute, hostnames: Vec<Hostname>) {
        let attached = self.routes.len();
        for (rule_pos, rule) in route.rules.iter().enumerate() {
            for (match_index, m) in rule.matches.iter().enumerate() {
                let ordinal = Ordinal::try_from(self.candidates.len()).unwrap_or(Ordinal::MAX);
                for hostname in &hostnames {
                    self.index.insert(hostname, &m.path, ordinal);
                }
                self.candidates.push(Candidate {
                    attached,
                    rule: rule_pos,
                    match_index,
                });
            }
        }
        self.routes.push(Attached {
            route: index,
            hostnames,
        });
    }
}

/// HTTPRoutes compiled for lookup, per Gateway listener.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// In tie-break order.
    routes: Vec<CompiledRoute>,
    listeners: Vec<ListenerEntry>,
}

impl RouteTable {
    /// Compiles `routes` against the listeners of `gateways`. `namespaces` provides labels for
    /// `allowedRoutes.namespaces.from: Selector`; every namespace also has the label
    /// `kubernetes.io/metadata.name`, as in Kubernetes. `retries` gives rules their GEP-1731
    /// retry policy (see [`Config::http_route_retries`](crate::config::Config::http_route_retries)).
    ///
    /// A route attaches to a listener when a parentRef selects it, the listener is HTTP or
    /// HTTPS and allows the route's kind and namespace, and their hostnames intersect. Each
    /// error leaves out one rule (or a set of conflicted listeners) and is returned; the rest
    /// of the table is usable. Creation timestamps come from `metadata.creationTimestamp`; a
    /// route without one ranks after every route that has one.
    pub fn build(
        gateways: &[Gateway],
        routes: &[HttpRoute],
        namespaces: &[Namespace],
        retries: &HttpRouteRetries,
    ) -> (Self, Vec<BuildError>) {
        let mut errors = Vec::new();

        let mut ordered: Vec<(Option<&Time>, RouteId, &HttpRoute)> = routes
            .iter()
            .map(|r| (r.metadata.creation_timestamp.as_ref(), route_id(r), r))
            .collect();
        // HTTPRouteRule.matches: "If ties still exist across multiple Routes, matching
        // precedence MUST be determined in order of the following criteria, continuing on
        // ties: * The oldest Route based on creation timestamp. * The Route appearing first in
        // alphabetical order by "{namespace}/{name}"."
        ordered.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));

        let compiled: Vec<CompiledRoute> = ordered
            .iter()
            .map(|(_, id, r)| compile_route(r, id.clone(), retries, &mut errors))
            .collect();

        let mut listeners = Vec::new();
        for gw in gateways {
            let gw_ns = gw.metadata.namespace.as_deref().unwrap_or("default");
            let gw_name = gw.metadata.name.as_deref().unwrap_or_default();
            for l in usable_listeners(gw, gw_ns, gw_name, &mut errors) {
                let mut entry = ListenerEntry {
                    listener: Listener {
                        gateway_namespace: gw_ns.to_owned(),
                        gateway_name: gw_name.to_owned(),
                        name: l.name.clone(),
                        port: u16::try_from(l.port).unwrap_or_default(),
                        hostname: l.hostname.as_deref().map_or(Hostname::Any, Hostname::parse),
                        scheme: attach::http_scheme(l).unwrap_or(Scheme::Http),
                    },
                    routes: Vec::new(),
                    candidates: Vec::new(),
                    index: ListenerIndex::default(),
                };
                for (index, ((_, id, r), route)) in ordered.iter().zip(&compiled).enumerate() {
                    let selected = r
                        .spec
                        .parent_refs
                        .iter()
                        .flatten()
                        .any(|p| attach::selects(p, &id.namespace, gw_ns, gw_name, l));
                    if !selected || !attach::allows_namespace(l, gw_ns, &id.namespace, namespaces) {
                        continue;
                    }
                    if let Some(hostnames) = intersect(&entry.listener.hostname, &route.hostnames) {
                        entry.attach(index, route, hostnames);
                    }
                }
                listeners.push(entry);
            }
        }

        (
            Self {
                routes: compiled,
                listeners,
            },
            errors,
        )
    }

    /// The listeners in the table, in Gateway and listener order.
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners.iter().map(|l| &l.listener)
    }

    /// The best rule for `req`, or `None`, for which the proxy answers 404 ("When no rules
    /// matching a request have been successfully attached to the parent a request is coming
    /// from, a HTTP 404 status code MUST be returned.").
    pub fn find(&self, req: &RequestParts<'_>) -> Option<Match<'_>> {
        let host = normalize_host(req.host);
        let entry = self.listener(req, &host)?;
        let prepared = Prepared {
            path: req.path,
            method: req.method,
            headers: req.headers,
            query: parse_query(req.query),
        };

        // Only the candidates whose hostname and path can match; in tie-break order, so the
        // first of equal scores still wins as in a scan of every candidate.
        let mut ordinals = Candidates::new();
        entry.index.candidates(&host, req.path, &mut ordinals);
        self.best(entry, &host, &prepared, ordinals)
    }

    /// [`find`](Self::find) without the index: every candidate of the listener is scored.
    /// The reference the index is tested against, and the baseline of the route_match
    /// benchmark; not for the data path.
    #[doc(hidden)]
    pub fn find_by_scan(&self, req: &RequestParts<'_>) -> Option<Match<'_>> {
        let host = normalize_host(req.host);
        let entry = self.listener(req, &host)?;
        let prepared = Prepared {
            path: req.path,
            method: req.method,
            headers: req.headers,
            query: parse_query(req.query),
        };
        let all = 0..Ordinal::try_from(entry.candidates.len()).unwrap_or(Ordinal::MAX);
        self.best(entry, &host, &prepared, all)
    }

    /// The best-scoring of `ordinals` (ascending) of `entry` for the request.
    fn best<'t>(
        &'t self,
        entry: &'t ListenerEntry,
        host: &str,
        prepared: &Prepared<'_>,
        ordinals: impl IntoIterator<Item = Ordinal>,
    ) -> Option<Match<'t>> {
        let mut best: Option<(Score, Match<'_>)> = None;
        // The host scores of the route of the previous candidate (candidates of one route
        // are consecutive).
        let mut route_host: Option<(usize, Option<RouteHost<'t>>)> = None;
        for ordinal in ordinals {
            let Some(candidate) = entry.candidates.get(ordinal as usize) else {
                continue;
            };
            let Some(attached) = entry.routes.get(candidate.attached) else {
                continue;
            };
            let route = &self.routes[attached.route];
            let host_scores = match route_host {
                Some((a, scores)) if a == candidate.attached => scores,
                _ => {
                    let scores = attached
                        .hostnames
                        .iter()
                        .filter_map(|h| h.route_score(host).map(|s| (h, s)))
                        .max_by_key(|(_, s)| *s)
                        .map(|(h, s)| {
                            let original =
                                best_route_score(&route.hostnames, host).unwrap_or(HostScore::Any);
                            (h, s, original)
                        });
                    route_host = Some((candidate.attached, scores));
                    scores
                }
            };
            let Some((hostname, host_score, original_host)) = host_scores else {
                continue;
            };
            let rule = &route.rules[candidate.rule];
            let m = &rule.matches[candidate.match_index];
            let Some(request) = m.score(prepared) else {
                continue;
            };
            let score = Score {
                host: host_score,
                original_host,
                request,
            };
            // Strictly greater: the first candidate in tie-break order keeps a tie.
            // "If ties still exist within an HTTPRoute, matching precedence MUST be
            // granted to the FIRST matching rule (in list order) with a match meeting
            // the above criteria."
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((
                    score,
                    Match {
                        route: &route.id,
                        rule_index: rule.index,
                        match_index: candidate.match_index,
                        rule: &rule.rule,
                        listener: &entry.listener,
                        hostname,
                        path: &m.path,
                    },
                ));
            }
        }
        best.map(|(_, m)| m)
    }

    /// The listener a request arrived on. By port, the listener whose hostname matches the
    /// host most specifically: GatewaySpec.listeners "requests SHOULD match at most one
    /// Listener. For example, if Listeners are defined for "foo.example.com" and
    /// "*.example.com", a request to "foo.example.com" SHOULD only be routed using routes
    /// attached to the "foo.example.com" Listener" (Listener Isolation).
    fn listener(&self, req: &RequestParts<'_>, host: &str) -> Option<&ListenerEntry> {
        let mut of_gateway = self.listeners.iter().filter(|l| {
            l.listener.gateway_namespace == req.gateway.namespace
                && l.listener.gateway_name == req.gateway.name
        });
        match req.listener {
            ListenerRef::Name(name) => of_gateway.find(|l| l.listener.name == name),
            ListenerRef::Port(port) => of_gateway
                .filter(|l| l.listener.port == port)
                .filter_map(|l| l.listener.hostname.listener_score(host).map(|s| (s, l)))
                .rev()
                .max_by_key(|(s, _)| *s)
                .map(|(_, l)| l),
        }
    }
}

fn route_id(r: &HttpRoute) -> RouteId {
    RouteId {
        namespace: r
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        name: r.metadata.name.clone().unwrap_or_default(),
    }
}

fn compile_route(
    r: &HttpRoute,
    id: RouteId,
    retries: &HttpRouteRetries,
    errors: &mut Vec<BuildError>,
) -> CompiledRoute {
    let hostnames = r
        .spec
        .hostnames
        .iter()
        .flatten()
        .map(|h| Hostname::parse(h))
        .collect();
    // HTTPRouteSpec.rules: "+kubebuilder:default={{matches: {{path: {type: "PathPrefix",
    // value: "/"}}}}}"; a route written without rules gets that rule, with no backends.
    let default_rule = [Default::default()];
    let rules = match r.spec.rules.as_deref() {
        None | Some([]) => &default_rule[..],
        Some(rules) => rules,
    };
    let object = ObjectRef::new("HTTPRoute", &id.namespace, &id.name);
    let rules = rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| {
            let mut compiled = rule::compile(rule, &id, i)
                .map_err(|e| errors.push(e))
                .ok()?;
            compiled.rule.retry = retries.get(&(object.clone(), i)).cloned();
            Some(compiled)
        })
        .collect();
    CompiledRoute {
        id,
        hostnames,
        rules,
    }
}

/// The HTTP and HTTPS listeners of `gw` that accept HTTPRoutes, without conflicted ones:
/// "If a set of Listeners contains Listeners that are not distinct, then those Listeners are
/// _Conflicted_" and "The implementation MUST NOT pick one conflicting Listener as the
/// winner. ALL indistinct Listeners must not be accepted for processing."
fn usable_listeners<'g>(
    gw: &'g Gateway,
    gw_ns: &str,
    gw_name: &str,
    errors: &mut Vec<BuildError>,
) -> Vec<&'g gateway_api::apis::standard::gateways::GatewayListeners> {
    let http: Vec<_> = gw
        .spec
        .listeners
        .iter()
        .filter(|l| attach::http_scheme(l).is_some() && u16::try_from(l.port).is_ok_and(|p| p != 0))
        .collect();
    let key = |l: &gateway_api::apis::standard::gateways::GatewayListeners| {
        (
            l.port,
            l.protocol.clone(),
            l.hostname.as_deref().map_or(Hostname::Any, Hostname::parse),
        )
    };
    let mut usable = Vec::new();
    let mut reported = Vec::new();
    for l in &http {
        let same: Vec<_> = http.iter().filter(|o| key(o) == key(l)).collect();
        if same.len() == 1 {
            if attach::allows_kind(l) {
                usable.push(*l);
            }
        } else if !reported.contains(&key(l)) {
            reported.push(key(l));
            errors.push(BuildError::ConflictedListeners {
                gateway: format!("{gw_ns}/{gw_name}"),
                port: u16::try_from(l.port).unwrap_or_default(),
                hostname: key(l).2.to_string(),
                listeners: same.iter().map(|o| o.name.clone()).collect(),
            });
        }
    }
    usable
}

/// The route's hostnames as they apply on a listener, or `None` when the route does not
/// attach. HTTPRouteSpec.hostnames: "If both the Listener and HTTPRoute have specified
/// hostnames, any HTTPRoute hostnames that do not match the Listener hostname MUST be
/// ignored." and "If both the Listener and HTTPRoute have specified hostnames, and none match
/// with the criteria above, then the HTTPRoute is not accepted."
fn intersect(listener: &Hostname, route: &[Hostname]) -> Option<Vec<Hostname>> {
    if route.is_empty() {
        return Some(vec![listener.clone()]);
    }
    let hostnames: Vec<Hostname> = route
        .iter()
        .filter_map(|r| Hostname::intersect(listener, r))
        .collect();
    (!hostnames.is_empty()).then_some(hostnames)
}
