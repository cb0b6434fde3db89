//! Header hygiene of a forwarding proxy: hop-by-hop fields, `X-Forwarded-*` and `Via`.

use std::net::IpAddr;

use http::Version;
use http::header::{
    CONNECTION, HeaderMap, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE, VIA,
};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The pseudonym lbgw uses in `Via` (RFC 9110 §7.6.3 allows a pseudonym for the host).
const VIA_PSEUDONYM: &str = "lbgw";

/// Whether a request asks to switch to WebSocket (RFC 6455 §4.1: `Upgrade: websocket` and
/// `Connection: Upgrade`, on HTTP/1.1).
pub fn is_websocket_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && connection_has(headers, "upgrade")
        && headers
            .get_all(UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the hop-by-hop fields a proxy must not forward.
///
/// RFC 9110 §7.6.1: "a proxy or gateway MUST parse a received Connection header field before
/// a message is forwarded and, for each connection-option in this field, remove any header or
/// trailer field(s) from the message with the same name as the connection-option, and then
/// remove the Connection header field itself", and it "SHOULD" also remove Proxy-Connection,
/// Keep-Alive, TE, Transfer-Encoding and Upgrade. `TE: trailers` is kept: it says the
/// client accepts trailers end to end, which gRPC over HTTP/2 requires (RFC 9113 §8.2.2
/// allows exactly that value). With `upgrading`, `Connection: upgrade` and `Upgrade` are kept
/// so that the next hop sees the WebSocket handshake (RFC 9110 §7.8).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    // Most messages carry none of these: one pass over the names (comparisons of known
    // names, no hashing) settles it.
    let hop_by_hop = |name: &HeaderName| {
        name == CONNECTION
            || name == TE
            || name == TRANSFER_ENCODING
            || name == UPGRADE
            || name == KEEP_ALIVE
            || name == PROXY_CONNECTION
    };
    if !headers.keys().any(hop_by_hop) {
        if upgrading {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in &listed {
        if !(upgrading && name == UPGRADE) {
            headers.remove(name);
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    let trailers = headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    headers.remove(TE);
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if upgrading {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(CONNECTION);
        headers.remove(UPGRADE);
    }
}

/// Drops `TE` from a request going to an HTTP/1.1 upstream. `remove_hop_by_hop` keeps
/// `TE: trailers` (the only value allowed in HTTP/2, RFC 9113 §8.2.2, needed by gRPC over
/// h2c), but in HTTP/1.1 a sender of TE "MUST also send a "TE" connection option within the
/// Connection header field" (RFC 9110 §10.1.4); without it TE is simply not sent.
pub fn remove_te_for_http1(headers: &mut HeaderMap) {
    headers.remove(TE);
}

/// What the forwarding headers say about the client's request.
#[derive(Clone, Copy, Debug)]
pub struct Forwarded<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The host the client asked for (Host or `:authority`), if any.
    pub host: Option<&'a str>,
    /// The HTTP version the client used, for `Via`.
    pub version: Version,
}

/// Adds `X-Forwarded-For` (appending the client to any list the client sent, as the de-facto
/// standard does), sets `X-Forwarded-Proto` and `X-Forwarded-Host`, and appends `Via`.
pub fn add_forwarded(headers: &mut HeaderMap, f: &Forwarded<'_>) {
    let client = address_value(f.client);
    // Every field line counts: a list may arrive split over several lines (RFC 9110 §5.3).
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let xff = if prior.is_empty() {
        Some(client)
    } else {
        let client = client.to_str().unwrap_or_default();
        HeaderValue::from_str(&format!("{}, {client}", prior.join(", "))).ok()
    };
    // Joined into one line: a list split over several lines is read differently by
    // different backends.
    headers.remove(&X_FORWARDED_FOR);
    if let Some(value) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(f.proto));
    match f.host.and_then(|h| HeaderValue::from_str(h).ok()) {
        Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    append_via(headers, f.version);
}

/// Appends lbgw to `Via`. RFC 9110 §7.6.3: "A proxy MUST send an appropriate Via header field
/// ... in each message that it forwards", with the received protocol version, so a request
/// that came over HTTP/2 says `2 lbgw` and one over HTTP/1.1 `1.1 lbgw`.
pub fn append_via(headers: &mut HeaderMap, received: Version) {
    let value = match received {
        Version::HTTP_09 => "0.9 lbgw",
        Version::HTTP_10 => "1.0 lbgw",
        Version::HTTP_2 => "2 lbgw",
        Version::HTTP_3 => "3 lbgw",
        _ => "1.1 lbgw",
    };
    debug_assert!(value.ends_with(VIA_PSEUDONYM));
    headers.append(VIA, HeaderValue::from_static(value));
}

/// A client address as `X-Forwarded-For` lists it: IPv4 (also when IPv4-mapped, RFC 4291
/// §2.5.5.2) in dotted decimal, IPv6 in RFC 5952 text. IPv4, the common case, is written
/// without the formatting machinery.
fn address_value(client: IpAddr) -> HeaderValue {
    let v4 = match client {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => {
                return HeaderValue::from_str(&v6.to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
            }
        },
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for digit in &digits[skip..] {
            text[len] = b'0' + digit;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&text[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_lists_are_removed() {
        let mut h = map(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip, trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["te", "x-kept"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn te_is_not_sent_to_http1_upstreams() {
        let mut h = map(&[("te", "trailers"), ("x-kept", "yes")]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h["te"], "trailers");
        remove_te_for_http1(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn forwarded_for_joins_every_field_line() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 198.51.100.2"),
        );
        add_forwarded(
            &mut h,
            &Forwarded {
                client: "192.0.2.7".parse().unwrap(),
                proto: "http",
                host: None,
                version: Version::HTTP_11,
            },
        );
        let xff: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff, ["203.0.113.9, 198.51.100.1, 198.51.100.2, 192.0.2.7"]);
    }

    #[test]
    fn an_upgrade_keeps_connection_upgrade() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(is_websocket_upgrade(Version::HTTP_11, &h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!is_websocket_upgrade(Version::HTTP_2, &h));
    }

    #[test]
    fn forwarded_headers_append_the_client() {
        let mut h = map(&[("x-forwarded-for", "203.0.113.9"), ("via", "1.0 fred")]);
        add_forwarded(
            &mut h,
            &Forwarded {
                client: "::ffff:127.0.0.1".parse().unwrap(),
                proto: "https",
                host: Some("example.com"),
                version: Version::HTTP_2,
            },
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "example.com");
        let via: Vec<_> = h.get_all("via").iter().collect();
        assert_eq!(via, ["1.0 fred", "2 lbgw"]);
    }

    #[test]
    fn client_addresses_are_written_as_std_writes_them() {
        for text in [
            "0.0.0.0",
            "1.2.3.4",
            "9.10.99.100",
            "192.168.1.254",
            "255.255.255.255",
            "10.0.10.200",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(address_value(ip), text);
            let mapped: IpAddr = format!("::ffff:{text}").parse().unwrap();
            assert_eq!(address_value(mapped), text);
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(address_value(v6), "2001:db8::1");
    }

    #[test]
    fn a_message_without_hop_by_hop_fields_is_left_alone() {
        let mut h = map(&[("accept", "*/*"), ("x-custom", "1")]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        let mut h = map(&[("keep-alive", "timeout=5"), ("x-custom", "1")]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-custom"));
    }
}
