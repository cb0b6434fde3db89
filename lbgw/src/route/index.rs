//! The per-listener index that makes a lookup cost grow with the request (its host labels and
//! path segments), not with the number of routes.
//!
//! Every (route, rule, match) attached to a listener is a candidate, numbered in tie-break
//! order (route order, then rule and match order). A candidate is filed under each of its
//! route's intersected hostnames (exact name, wildcard suffix, or any host) and, within that,
//! under its path match (exact path, prefix, or the regex list). A lookup collects the
//! candidates filed under the keys the request can match, in number order, and scores only
//! those with the same precedence rules as a scan of every candidate would: a candidate left
//! out is one whose hostname or path cannot match the request, which a scan would skip too.

/// Looked up on every request with its host and path; the keys come from the configuration,
/// so a fast hash.
type HashMap<K, V> = foldhash::HashMap<K, V>;

use smallvec::SmallVec;

use super::hostname::Hostname;
use super::matches::PathMatch;

/// A candidate's position in the listener's tie-break order.
pub(crate) type Ordinal = u32;

/// The candidates of one lookup: on the stack unless the request can match more than this
/// many (route, rule, match) entries, so a lookup does not allocate.
pub(crate) type Candidates = SmallVec<[Ordinal; 32]>;

/// Candidates by path match.
#[derive(Debug, Default)]
struct PathIndex {
    /// `Exact` paths.
    exact: HashMap<String, Vec<Ordinal>>,
    /// `PathPrefix` values without trailing `/` (so `/` is the empty key).
    prefix: HashMap<String, Vec<Ordinal>>,
    /// `RegularExpression` paths: tried for every request.
    regex: Vec<Ordinal>,
}

impl PathIndex {
    fn insert(&mut self, path: &PathMatch, ordinal: Ordinal) {
        match path {
            PathMatch::Exact(value) => self.exact.entry(value.clone()).or_default().push(ordinal),
            PathMatch::Prefix(value) => self
                .prefix
                .entry(value.trim_end_matches('/').to_owned())
                .or_default()
                .push(ordinal),
            PathMatch::Regex(_) => self.regex.push(ordinal),
        }
    }

    /// Adds the candidates whose path match can match `path` to `out`.
    fn collect(&self, path: &str, out: &mut Candidates) {
        if let Some(c) = self.exact.get(path) {
            out.extend_from_slice(c);
        }
        if !self.prefix.is_empty() {
            // PathMatch::score: a prefix `p` matches when the path starts with it and the
            // rest is empty or starts with `/`, i.e. `p` is the path up to a `/` or all of it.
            for (i, _) in path.match_indices('/') {
                if let Some(c) = self.prefix.get(&path[..i]) {
                    out.extend_from_slice(c);
                }
            }
            if let Some(c) = self.prefix.get(path) {
                out.extend_from_slice(c);
            }
        }
        out.extend_from_slice(&self.regex);
    }
}

/// Candidates by hostname, then by path.
#[derive(Debug, Default)]
pub(crate) struct ListenerIndex {
    exact: HashMap<String, PathIndex>,
    /// Keyed by the suffix with its leading dot (`.example.com` for `*.example.com`).
    wildcard: HashMap<String, PathIndex>,
    any: PathIndex,
}

impl ListenerIndex {
    /// Files candidate `ordinal` under `hostname` and `path`.
    pub(crate) fn insert(&mut self, hostname: &Hostname, path: &PathMatch, ordinal: Ordinal) {
        let paths = match hostname {
            Hostname::Any => &mut self.any,
            Hostname::Exact(name) => self.exact.entry(name.clone()).or_default(),
            Hostname::Wildcard(suffix) => self.wildcard.entry(suffix.clone()).or_default(),
        };
        paths.insert(path, ordinal);
    }

    /// The candidates that may match `host` (normalized) and `path`, in tie-break order and
    /// without duplicates (a route with several matching hostnames is filed more than once).
    pub(crate) fn candidates(&self, host: &str, path: &str, out: &mut Candidates) {
        out.clear();
        if let Some(paths) = self.exact.get(host) {
            paths.collect(path, out);
        }
        if !self.wildcard.is_empty() {
            // Hostname::matches: a wildcard suffix matches when at least one character
            // precedes it, so only suffixes starting at a dot after the first character.
            for (i, _) in host.match_indices('.').filter(|(i, _)| *i > 0) {
                if let Some(paths) = self.wildcard.get(&host[i..]) {
                    paths.collect(path, out);
                }
            }
        }
        self.any.collect(path, out);
        out.sort_unstable();
        out.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, PathMatch)]) -> ListenerIndex {
        let mut index = ListenerIndex::default();
        for (i, (host, path)) in entries.iter().enumerate() {
            index.insert(&Hostname::parse(host), path, i as Ordinal);
        }
        index
    }

    fn found(index: &ListenerIndex, host: &str, path: &str) -> Vec<Ordinal> {
        let mut out = Candidates::new();
        index.candidates(host, path, &mut out);
        out.to_vec()
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.to_owned())
    }

    #[test]
    fn prefixes_are_found_on_segment_boundaries_only() {
        let index = index(&[
            ("", prefix("/")),
            ("", prefix("/api/")),
            ("", prefix("/api/v1")),
            ("", prefix("/ap")),
            ("", PathMatch::Exact("/api".to_owned())),
        ]);
        assert_eq!(found(&index, "h", "/api/v1/users"), [0, 1, 2]);
        assert_eq!(found(&index, "h", "/api"), [0, 1, 4]);
        assert_eq!(found(&index, "h", "/api/"), [0, 1]);
        assert_eq!(found(&index, "h", "/api/v10"), [0, 1]);
        assert_eq!(found(&index, "h", "/apx"), [0]);
    }

    #[test]
    fn hosts_by_exact_name_wildcard_suffix_and_any() {
        let index = index(&[
            ("foo.example.com", prefix("/")),
            ("*.example.com", prefix("/")),
            ("*.com", prefix("/")),
            ("", prefix("/")),
            ("bar.example.com", prefix("/")),
        ]);
        assert_eq!(found(&index, "foo.example.com", "/"), [0, 1, 2, 3]);
        assert_eq!(found(&index, "a.b.example.com", "/"), [1, 2, 3]);
        // "*.example.com" does not match the apex.
        assert_eq!(found(&index, "example.com", "/"), [2, 3]);
        assert_eq!(found(&index, "example.org", "/"), [3]);
        // A host that is only the suffix, dot included, is no wildcard match either.
        assert_eq!(found(&index, ".com", "/"), [3]);
    }

    #[test]
    fn regexes_are_always_candidates_and_duplicates_are_removed() {
        let re = regex::Regex::new("^(?:/x.*)$").unwrap();
        let mut index = index(&[("a.example", PathMatch::Regex(re)), ("", prefix("/"))]);
        // The same candidate under a second hostname of its route.
        index.insert(&Hostname::parse("*.example"), &prefix("/"), 1);
        assert_eq!(found(&index, "a.example", "/nothing"), [0, 1]);
        assert_eq!(found(&index, "b.example", "/nothing"), [1]);
    }
}
