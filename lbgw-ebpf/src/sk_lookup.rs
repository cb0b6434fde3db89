//! Socket steering for the proxy (Cloudflare's `sk_lookup` design, kernel
//! Documentation/bpf/prog_sk_lookup.rst): the kernel has local routes for the VIPs the proxy
//! serves, so their packets are delivered locally; when it looks for the socket of a new
//! connection to (VIP, port), this program hands it the proxy's listening socket for that
//! Gateway port, found in `LBGW_LISTENERS`. The proxy binds each port once, on loopback, instead
//! of binding every VIP; its accepted sockets keep the VIP and port the client addressed as
//! their local address. Anything else continues with the kernel's regular lookup.

use aya_ebpf::{macros::sk_lookup, programs::SkLookupContext};
use lbgw_common::{LISTENERS_V6_OFFSET, PORT_ACTION_PROXY, PortKey, VipKey};

use crate::maps;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
/// Verdict: continue the lookup (with the socket assigned, if one was).
const SK_PASS: u32 = 1;

#[sk_lookup]
pub fn lbgw_sk_lookup(ctx: SkLookupContext) -> u32 {
    // The verifier only allows context loads at a constant offset from the context pointer
    // itself, so every field is read once, up front, with a volatile load LLVM cannot merge or
    // rebase. SAFETY: the kernel passes a valid `bpf_sk_lookup` for the program's lifetime.
    let l = ctx.lookup;
    let (family, protocol, port, ip4, w) = unsafe {
        (
            core::ptr::read_volatile(&(*l).family),
            core::ptr::read_volatile(&(*l).protocol),
            core::ptr::read_volatile(&(*l).local_port),
            core::ptr::read_volatile(&(*l).local_ip4),
            [
                core::ptr::read_volatile(&(*l).local_ip6[0]),
                core::ptr::read_volatile(&(*l).local_ip6[1]),
                core::ptr::read_volatile(&(*l).local_ip6[2]),
                core::ptr::read_volatile(&(*l).local_ip6[3]),
            ],
        )
    };
    let addr = match family {
        AF_INET => VipKey::v4(ip4.to_ne_bytes()),
        AF_INET6 => {
            let (a, b, c, d) = (
                w[0].to_ne_bytes(),
                w[1].to_ne_bytes(),
                w[2].to_ne_bytes(),
                w[3].to_ne_bytes(),
            );
            VipKey::v6([
                a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1],
                d[2], d[3],
            ])
        }
        _ => return SK_PASS,
    };
    // `local_port` is in host byte order (include/uapi/linux/bpf.h).
    let port = port as u16;
    let key = PortKey {
        addr: addr.addr,
        port_be: port.to_be(),
        proto: protocol as u8,
        _pad: 0,
    };
    if let Some(served) = maps::port(&key) {
        if served.action == PORT_ACTION_PROXY {
            // A missing socket (the proxy is restarting) leaves the regular lookup to answer.
            let index = if family == AF_INET6 {
                served.target + LISTENERS_V6_OFFSET
            } else {
                served.target
            };
            let _ = maps::LISTENERS.redirect_sk_lookup(&ctx, index, 0);
        }
    }
    SK_PASS
}
