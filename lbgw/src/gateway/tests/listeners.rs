//! Listener and Gateway conditions, and which listeners are programmed.

use super::tls::{secret_yaml, self_signed};
use super::*;

fn served(model: &GatewayModel) -> Vec<(u16, String)> {
    model
        .listeners()
        .map(|l| (l.port, format!("{}/{}", l.gateway, l.name)))
        .collect()
}

#[test]
fn valid_listeners_are_programmed_with_the_gateway_vips() {
    let yaml = docs(&[
        &gateway(&[
            "{name: http, port: 80, protocol: HTTP}",
            "{name: alt, port: 8080, protocol: HTTP, hostname: '*.example.test'}",
        ]),
        "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: infra}
spec:
  gatewayClassName: lbgw
  addresses: [{type: IPAddress, value: 192.0.2.7}]
  listeners: [{name: web, port: 80, protocol: HTTP}]
",
    ]);
    let (model, status) = build(&yaml);
    // One PortModel per port, sorted; Gateways in configuration (namespace/name) order.
    let ports: Vec<(u16, Vec<String>)> = model
        .ports
        .iter()
        .map(|p| {
            (
                p.port,
                p.listeners
                    .iter()
                    .map(|l| format!("{}/{}", l.gateway, l.name))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            (
                80,
                vec!["infra/gw/http".to_owned(), "infra/other/web".to_owned()]
            ),
            (8080, vec!["infra/gw/alt".to_owned()]),
        ]
    );
    let web = &model.ports[0].listeners[1];
    assert_eq!(web.addresses, vec!["192.0.2.7".parse::<IpAddr>().unwrap()]);
    assert_eq!(web.protocol, ListenerProtocol::Http);
    assert!(web.certificate.is_none());
    assert_eq!(
        model.ports[1].listeners[0].hostname,
        Hostname::parse("*.example.test")
    );
    let gw = status.gateway(&GatewayId {
        namespace: "infra".into(),
        name: "gw".into(),
    });
    let gw = gw.expect("status");
    assert_eq!(gw.addresses.len(), 1);
    assert_eq!(
        summary(&gw.conditions),
        vec![
            ("Accepted", true, "Accepted"),
            ("Programmed", true, "Programmed")
        ]
    );
    assert_eq!(
        summary(&gw.listeners[0].conditions),
        vec![
            ("Accepted", true, "Accepted"),
            ("Conflicted", false, "NoConflicts"),
            ("ResolvedRefs", true, "ResolvedRefs"),
            ("Programmed", true, "Programmed"),
        ]
    );
    assert!(status.is_ok(), "{:?}", status.problems());
}

#[test]
fn unsupported_protocols_and_ports_are_not_accepted() {
    // ListenerReasonUnsupportedProtocol: "the Listener could not be attached to be Gateway
    // because its protocol type is not supported."
    let (model, status) = build(&gateway(&[
        "{name: http, port: 80, protocol: HTTP}",
        "{name: db, port: 5432, protocol: TCP}",
        "{name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}",
        "{name: zero, port: 0, protocol: HTTP}",
    ]));
    assert_eq!(served(&model), vec![(80, "infra/gw/http".to_owned())]);
    for name in ["db", "tls"] {
        let c = listener_condition(&status, "infra/gw", name, "Accepted");
        assert_eq!(
            (c.status, c.reason),
            (false, "UnsupportedProtocol"),
            "{name}"
        );
        let c = listener_condition(&status, "infra/gw", name, "Programmed");
        assert_eq!((c.status, c.reason), (false, "Invalid"), "{name}");
    }
    let c = listener_condition(&status, "infra/gw", "zero", "Accepted");
    assert_eq!((c.status, c.reason), (false, "PortUnavailable"));
    // Some listeners are valid: the Gateway is accepted, saying which are not.
    let gw = &status.gateways[0];
    assert_eq!(
        gw.conditions[0],
        Condition::yes(
            "Accepted",
            "ListenersNotValid",
            "listeners not accepted: db, tls, zero"
        )
    );
    let (_, status) = build(&gateway(&["{name: db, port: 5432, protocol: TCP}"]));
    assert_eq!(
        summary(&status.gateways[0].conditions),
        vec![
            ("Accepted", false, "ListenersNotValid"),
            ("Programmed", false, "Invalid")
        ]
    );
}

#[test]
fn indistinct_listeners_are_all_conflicted() {
    // "The implementation MUST NOT pick one conflicting Listener as the winner. ALL
    // indistinct Listeners must not be accepted for processing."
    let (model, status) = build(&gateway(&[
        "{name: a, port: 80, protocol: HTTP, hostname: foo.example.test}",
        "{name: b, port: 80, protocol: HTTP, hostname: FOO.example.test}",
        "{name: c, port: 80, protocol: HTTP, hostname: bar.example.test}",
        "{name: plain, port: 8443, protocol: HTTP}",
        "{name: secure, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: x}]}}",
    ]));
    assert_eq!(served(&model), vec![(80, "infra/gw/c".to_owned())]);
    for name in ["a", "b"] {
        let c = listener_condition(&status, "infra/gw", name, "Conflicted");
        assert_eq!((c.status, c.reason), (true, "HostnameConflict"));
        assert_eq!(
            c.message,
            "listeners a, b share port 80, protocol HTTP and hostname foo.example.test"
        );
        let c = listener_condition(&status, "infra/gw", name, "Accepted");
        assert_eq!((c.status, c.reason), (false, "HostnameConflict"));
    }
    // HTTP and HTTPS on one port: ListenerReasonProtocolConflict.
    for name in ["plain", "secure"] {
        let c = listener_condition(&status, "infra/gw", name, "Conflicted");
        assert_eq!((c.status, c.reason), (true, "ProtocolConflict"), "{name}");
    }
    let c = listener_condition(&status, "infra/gw", "c", "Conflicted");
    assert_eq!((c.status, c.reason), (false, "NoConflicts"));
}

#[test]
fn a_missing_certificate_leaves_only_its_listener_unprogrammed() {
    let (model, status) = build(&gateway(&[
        "{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: missing}]}}",
        "{name: http, port: 80, protocol: HTTP}",
    ]));
    assert_eq!(served(&model), vec![(80, "infra/gw/http".to_owned())]);
    let c = listener_condition(&status, "infra/gw", "https", "ResolvedRefs");
    assert_eq!(
        *c,
        Condition::no(
            "ResolvedRefs",
            "InvalidCertificateRef",
            "Secret infra/missing does not exist"
        )
    );
    let c = listener_condition(&status, "infra/gw", "https", "Programmed");
    assert_eq!((c.status, c.reason), (false, "Invalid"));
    // The listener itself is valid; only its reference is not.
    let c = listener_condition(&status, "infra/gw", "https", "Accepted");
    assert!(c.status);
    assert_eq!(
        status.problems(),
        vec![
            "Gateway infra/gw listener https: ResolvedRefs=False InvalidCertificateRef: Secret infra/missing does not exist",
            "Gateway infra/gw listener https: Programmed=False Invalid: no valid certificate",
        ]
    );
    // No certificateRefs at all.
    let (_, status) = build(&gateway(&["{name: https, port: 443, protocol: HTTPS}"]));
    let c = listener_condition(&status, "infra/gw", "https", "ResolvedRefs");
    assert_eq!(c.message, "no tls.certificateRefs");
}

#[test]
fn a_valid_certificate_is_served() {
    let (cert, key) = self_signed("example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
    let yaml = docs(&[
        &gateway(&[
            "{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: site}]}}",
        ]),
        &secret_yaml("infra", "site", &cert, &key),
    ]);
    let (model, status) = build(&yaml);
    let l = model.listeners().next().expect("programmed");
    assert_eq!(l.protocol, ListenerProtocol::Https);
    let certified = l.certificate.as_ref().expect("certificate");
    assert!(certified.keys_match().is_ok());
    assert!(status.is_ok(), "{:?}", status.problems());
}

#[test]
fn cross_namespace_certificates_need_a_reference_grant() {
    let (cert, key) = self_signed("example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
    let secret = secret_yaml("certs", "site", &cert, &key);
    let gw = gateway(&[
        "{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: site, namespace: certs}]}}",
    ]);
    let (model, status) = build(&docs(&[&gw, &secret]));
    assert_eq!(model.listeners().count(), 0);
    // ListenerReasonRefNotPermitted: "references an object in another namespace, where the
    // object in the other namespace does not have a ReferenceGrant explicitly allowing the
    // reference."
    let c = listener_condition(&status, "infra/gw", "https", "ResolvedRefs");
    assert_eq!((c.status, c.reason), (false, "RefNotPermitted"));

    let grant = "
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: '', kind: Secret}]
";
    let (model, status) = build(&docs(&[&gw, &secret, grant]));
    assert_eq!(model.listeners().count(), 1);
    assert!(status.is_ok(), "{:?}", status.problems());
}

#[test]
fn the_first_valid_certificate_ref_is_used() {
    let (cert, key) = self_signed("example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
    let yaml = docs(&[
        &gateway(&[
            "{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [\
             {name: vault, group: secrets.example.com, kind: VaultSecret}, {name: site}]}}",
        ]),
        &secret_yaml("infra", "site", &cert, &key),
    ]);
    let (model, status) = build(&yaml);
    assert!(
        model
            .listeners()
            .next()
            .and_then(|l| l.certificate.as_ref())
            .is_some()
    );
    // ResolvedRefs is False as long as one ref is invalid ("at least one TLS CertificateRef
    // that is invalid or does not exist"); the listener still serves with the valid one.
    let c = listener_condition(&status, "infra/gw", "https", "ResolvedRefs");
    assert_eq!((c.status, c.reason), (false, "InvalidCertificateRef"));
    assert!(c.message.contains("VaultSecret"), "{}", c.message);
    assert!(listener_condition(&status, "infra/gw", "https", "Programmed").status);
}

#[test]
fn unsupported_route_kinds() {
    let (model, status) = build(&gateway(&[
        "{name: grpc, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}",
        "{name: both, port: 81, protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: GRPCRoute}]}}",
    ]));
    assert_eq!(served(&model), vec![(81, "infra/gw/both".to_owned())]);
    for name in ["grpc", "both"] {
        let c = listener_condition(&status, "infra/gw", name, "ResolvedRefs");
        assert_eq!((c.status, c.reason), (false, "InvalidRouteKinds"), "{name}");
    }
    let c = listener_condition(&status, "infra/gw", "grpc", "Programmed");
    assert_eq!((c.status, c.reason), (false, "Invalid"));
}

#[test]
fn gateways_without_an_address_are_not_programmed() {
    let yaml = gateway(&["{name: http, port: 80, protocol: HTTP}"]).replace(
        "  listeners:",
        "  addresses: [{type: Hostname, value: gw.example.test}]\n  listeners:",
    );
    let (model, status) = build(&yaml);
    assert_eq!(
        status.problems(),
        vec![
            "Gateway infra/gw: Programmed=False AddressNotAssigned: IPAM assigned no address (see the VIP plan)"
        ]
    );
    // The listener itself is fine; without XDP the proxy serves it on any address.
    let l = model.listeners().next().expect("listener");
    assert!(l.addresses.is_empty());
}

#[test]
fn gateways_of_other_controllers_are_left_alone() {
    let yaml = docs(&[
        &gateway(&["{name: http, port: 80, protocol: HTTP}"]),
        "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: lbgw}
spec: {controllerName: example.com/other}
",
        "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec: {parentRefs: [{name: gw}]}
",
    ]);
    let (model, status) = build(&yaml);
    assert!(model.ports.is_empty());
    assert_eq!(status, GatewayStatus::default());
}
