//! Frame builders for the XDP fixture tables. Written independently of lbgw's own packet code
//! so that a shared mistake cannot make a test pass.

pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

/// Ethernet header, with an 802.1Q tag when `vlan` is set.
pub fn eth(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, ether_type: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(vid) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// An ARP packet (RFC 826) for Ethernet/IPv4.
#[allow(clippy::too_many_arguments)]
pub fn arp(
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    vlan: Option<u16>,
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    let mut f = eth(eth_dst, eth_src, vlan, ETH_P_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}

/// Pads a frame to the 60-byte Ethernet minimum, as a NIC delivers it.
pub fn pad60(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// One's-complement sum (RFC 1071) folded and complemented.
pub fn inet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut acc: u64 = 0;
    for chunk in chunks {
        let mut it = chunk.chunks_exact(2);
        for w in &mut it {
            acc += u16::from_be_bytes([w[0], w[1]]) as u64;
        }
        if let [b] = it.remainder() {
            acc += (*b as u64) << 8;
        }
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An IPv6 packet carrying an ICMPv6 message whose checksum is computed here.
pub fn ipv6_icmp(src: [u8; 16], dst: [u8; 16], hop_limit: u8, mut msg: Vec<u8>) -> Vec<u8> {
    msg[2] = 0;
    msg[3] = 0;
    let len = (msg.len() as u32).to_be_bytes();
    let sum = inet_checksum(&[&src, &dst, &len, &[0, 0, 0, 58], &msg]);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    p.push(58);
    p.push(hop_limit);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&msg);
    p
}

/// A Neighbor Solicitation body (RFC 4861 §4.3), optionally with a Source Link-Layer Address option.
pub fn ns_msg(target: [u8; 16], slla: Option<[u8; 6]>) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target);
    if let Some(mac) = slla {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&mac);
    }
    m
}

/// A Neighbor Advertisement body (RFC 4861 §4.4) with a Target Link-Layer Address option.
pub fn na_msg(target: [u8; 16], flags: u8, tlla: [u8; 6]) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, flags, 0, 0, 0];
    m.extend_from_slice(&target);
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&tlla);
    m
}

/// The solicited-node multicast address of `target` (RFC 4291 §2.7.1) and its MAC (RFC 2464 §7).
pub fn solicited_node(target: [u8; 16]) -> ([u8; 16], [u8; 6]) {
    let mut ip = [0u8; 16];
    ip[0] = 0xff;
    ip[1] = 0x02;
    ip[11] = 1;
    ip[12] = 0xff;
    ip[13..].copy_from_slice(&target[13..]);
    let mac = [0x33, 0x33, 0xff, target[13], target[14], target[15]];
    (ip, mac)
}

/// A minimal IPv4/TCP SYN, for pass-through cases.
pub fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = inet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut tcp = vec![0x9c, 0x40];
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    ip.extend_from_slice(&tcp);
    ip
}

/// An IPv4 packet (id 1, DF unless `frag` says otherwise) with a correct header checksum.
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    ttl: u8,
    options: &[u8],
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(
        options.len() % 4,
        0,
        "IPv4 options are padded to 32-bit words"
    );
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    let mut ip = vec![0x40 | ihl as u8, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1]);
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&[ttl, proto, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(options);
    let sum = inet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(payload);
    ip
}

/// An ICMP echo message (RFC 792) with a correct checksum; `kind` 8 = request, 0 = reply.
pub fn icmp_echo(kind: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let sum = inet_checksum(&[&m]);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// An IPv6 packet with the given next header and payload (checksums are the caller's).
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next);
    p.push(hop_limit);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// A transport header stub: source port 40000, `dport`, then zeros (enough for classification).
pub fn ports(dport: u16, len: usize) -> Vec<u8> {
    let mut t = vec![0x9c, 0x40];
    t.extend_from_slice(&dport.to_be_bytes());
    t.resize(len.max(4), 0);
    t
}

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// TCP flags (RFC 9293 §3.1).
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_PSH: u8 = 0x08;

/// The pseudo-header the TCP and UDP checksums cover: IPv4 (RFC 9293 §3.1, RFC 768) when the
/// addresses have 4 bytes, IPv6 (RFC 8200 §8.1) when they have 16.
pub fn pseudo_header(src: &[u8], dst: &[u8], proto: u8, len: usize) -> Vec<u8> {
    assert_eq!(src.len(), dst.len(), "addresses of one family");
    let mut p = Vec::new();
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    match src.len() {
        4 => {
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        16 => {
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        n => panic!("an address has 4 or 16 bytes, not {n}"),
    }
    p
}

/// A TCP segment (20-byte header, no options, window 65535) whose checksum is computed here
/// over the pseudo-header of `src` → `dst` (4- or 16-byte addresses).
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: &[u8],
    dst: &[u8],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let sum = inet_checksum(&[&pseudo_header(src, dst, IPPROTO_TCP, t.len()), &t]);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    t
}

/// A UDP datagram; with `checksum` its checksum is computed here (a computed zero is sent as
/// all ones, RFC 768), without it the field is zero ("no checksum", IPv4 only).
pub fn udp(
    src: &[u8],
    dst: &[u8],
    sport: u16,
    dport: u16,
    payload: &[u8],
    checksum: bool,
) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    if checksum {
        let mut sum = inet_checksum(&[&pseudo_header(src, dst, IPPROTO_UDP, len), &u]);
        if sum == 0 {
            sum = 0xffff;
        }
        u[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    u
}

/// Checks the checksums of an Ethernet frame carrying IPv4 or IPv6 with TCP or UDP, computed
/// from scratch: the IPv4 header checksum and the transport checksum over its pseudo-header
/// (an IPv4 UDP checksum of zero is accepted as "none"). `Err` says which one is wrong.
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    let ether_type = u16::from_be_bytes([frame[12], frame[13]]);
    let (src, dst, proto, l4) = match ether_type {
        ETH_P_IP => {
            let ip = &frame[14..];
            let ihl = (ip[0] & 0x0f) as usize * 4;
            if inet_checksum(&[&ip[..ihl]]) != 0 {
                return Err(format!("IPv4 header checksum wrong: {:02x?}", &ip[..ihl]));
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            (&ip[12..16], &ip[16..20], ip[9], &ip[ihl..total])
        }
        ETH_P_IPV6 => {
            let ip = &frame[14..];
            let len = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            (&ip[8..24], &ip[24..40], ip[6], &ip[40..40 + len])
        }
        other => return Err(format!("not IP: EtherType {other:#06x}")),
    };
    let check_at = match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        other => return Err(format!("not TCP or UDP: protocol {other}")),
    };
    if proto == IPPROTO_UDP && src.len() == 4 && l4[check_at..check_at + 2] == [0, 0] {
        return Ok(());
    }
    if inet_checksum(&[&pseudo_header(src, dst, proto, l4.len()), l4]) != 0 {
        return Err(format!("transport checksum wrong: {:02x?}", &l4[..8]));
    }
    Ok(())
}
