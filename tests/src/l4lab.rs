//! A network namespace for running the L4 forwarder through BPF_PROG_TEST_RUN.
//!
//! BPF_PROG_TEST_RUN runs an XDP program as if the frame arrived on `lo` of the calling
//! thread's network namespace (net/bpf/test_run.c), and `bpf_fib_lookup` answers from that
//! namespace's routes and neighbours. [`L4Lab::new`] therefore creates a namespace with a
//! "backend" side and a "client" side, moves the calling thread into it and pins the thread to
//! one CPU (the connection table is per CPU); dropping the lab moves the thread back, unpins
//! it and deletes the namespace.
//!
//! ```text
//!   lo (ingress of every test frame)
//!   bk0 10.9.0.1/24 fd00:9::1/64  ── veth ──  bk1 192.0.2.254/24 2001:db8::fe/64
//!   backends 10.9.0.2-4, fd00:9::2           client 192.0.2.1, 2001:db8::1
//!   (permanent neighbours on bk0)            (permanent neighbours on bk1)
//! ```

use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
};

use lbgw::{
    config::ObjectRef,
    dataplane::{Dataplane, PortAction, ServedPort, Steering, VipEntry},
    l4::{Backend, Frontend},
};

use crate::{
    fixtures::{CLIENT_IP, CLIENT_MAC, VIP, client6, v6, vip6},
    netns::Netns,
    require_root,
};

/// The node's address on the backends' network (the source of source-NATed packets).
pub const NODE4: [u8; 4] = [10, 9, 0, 1];
pub fn node6() -> [u8; 16] {
    v6("fd00:9::1")
}
/// Backend addresses and the MACs of their permanent neighbour entries.
pub const BACKEND4: [[u8; 4]; 3] = [[10, 9, 0, 2], [10, 9, 0, 3], [10, 9, 0, 4]];
pub const BACKEND_MAC: [[u8; 6]; 3] = [
    [0x02, 0, 0, 0, 0x09, 0x02],
    [0x02, 0, 0, 0, 0x09, 0x03],
    [0x02, 0, 0, 0, 0x09, 0x04],
];
pub fn backend6() -> [u8; 16] {
    v6("fd00:9::2")
}
/// Source-NAT port range (first, count), disjoint from the client ports the tests use.
pub const SNAT_PORTS: (u16, u16) = (61000, 4000);

/// The lab namespace; the calling thread is inside it and pinned until the lab is dropped.
pub struct L4Lab {
    /// The MAC of `bk0` (source of forwarded frames) and `bk1` (source of reverse-NATed ones).
    pub bk0_mac: [u8; 6],
    pub bk1_mac: [u8; 6],
    pub bk0_ifindex: u32,
    pub bk1_ifindex: u32,
    /// The thread's namespace and CPU mask before, restored on drop.
    home: File,
    cpus: libc::cpu_set_t,
    /// Declared last: deleted after the thread has left it.
    ns: Netns,
}

impl L4Lab {
    pub fn new() -> Self {
        require_root();
        let ns = Netns::new("l4fix");
        // bpf_fib_lookup answers BPF_FIB_LKUP_RET_FWD_DISABLED unless forwarding is on for
        // the ingress device (net/core/filter.c, bpf_ipv4_fib_lookup / bpf_ipv6_fib_lookup).
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            crate::netns::run(ns.cmd("sysctl").args(["-q", "-w", key]));
        }
        ns.ip(&["link", "add", "bk0", "type", "veth", "peer", "name", "bk1"]);
        ns.ip(&["addr", "add", "10.9.0.1/24", "dev", "bk0"]);
        ns.ip(&["addr", "add", "fd00:9::1/64", "dev", "bk0", "nodad"]);
        ns.ip(&["addr", "add", "192.0.2.254/24", "dev", "bk1"]);
        ns.ip(&["addr", "add", "2001:db8::fe/64", "dev", "bk1", "nodad"]);
        ns.ip(&["link", "set", "bk0", "up"]);
        ns.ip(&["link", "set", "bk1", "up"]);
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let mut neighbours: Vec<(String, [u8; 6], &str)> = BACKEND4
            .iter()
            .zip(BACKEND_MAC)
            .map(|(ip, m)| (IpAddr::from(*ip).to_string(), m, "bk0"))
            .collect();
        neighbours.push((IpAddr::from(backend6()).to_string(), BACKEND_MAC[0], "bk0"));
        neighbours.push((IpAddr::from(CLIENT_IP).to_string(), CLIENT_MAC, "bk1"));
        neighbours.push((IpAddr::from(client6()).to_string(), CLIENT_MAC, "bk1"));
        for (ip, m, dev) in &neighbours {
            let m = mac(*m);
            ns.ip(&[
                "neigh",
                "replace",
                ip,
                "lladdr",
                &m,
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
        let link = |dev: &str| {
            let out = ns.ip(&["-j", "link", "show", "dev", dev]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j link");
            let ifindex = v[0]["ifindex"].as_u64().expect("ifindex") as u32;
            let address = v[0]["address"].as_str().expect("address");
            let mut m = [0u8; 6];
            for (i, part) in address.split(':').enumerate() {
                m[i] = u8::from_str_radix(part, 16).expect("MAC");
            }
            (ifindex, m)
        };
        let (bk0_ifindex, bk0_mac) = link("bk0");
        let (bk1_ifindex, bk1_mac) = link("bk1");

        let home = File::open("/proc/thread-self/ns/net").expect("this thread's netns");
        let target = File::open(format!("/var/run/netns/{}", ns.name)).expect("lab netns");
        // SAFETY: setns with a namespace fd affects only this thread.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        // SAFETY: plain syscalls on this thread's CPU mask, with a properly sized set.
        let cpus = unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(0, size, &mut old), 0);
            let cpu = (0..libc::CPU_SETSIZE as usize)
                .find(|&c| libc::CPU_ISSET(c, &old))
                .expect("an allowed CPU");
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
            old
        };
        Self {
            bk0_mac,
            bk1_mac,
            bk0_ifindex,
            bk1_ifindex,
            home,
            cpus,
            ns,
        }
    }

    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// A loaded program serving `frontends` (their VIPs must be [`VIP`] or [`vip6`]), with
    /// the pools of the fixture table and the [`SNAT_PORTS`] range.
    pub fn dataplane(&self, frontends: &[Frontend]) -> Dataplane {
        self.dataplane_from(lbgw::dataplane::object::bytes(), frontends)
    }

    /// [`L4Lab::dataplane`] with the eBPF object `object` instead of the embedded one.
    pub fn dataplane_from(&self, object: &[u8], frontends: &[Frontend]) -> Dataplane {
        let mut dp = Dataplane::load_with(object, &lbgw::dataplane::pin::Pinning::None)
            .expect("load the eBPF object");
        dp.sync_vips(&[
            VipEntry {
                ip: IpAddr::from(VIP),
                announce: true,
                until: None,
            },
            VipEntry {
                ip: IpAddr::from(vip6()),
                announce: true,
                until: None,
            },
        ])
        .expect("sync_vips");
        update(&mut dp, frontends);
        dp
    }
}

/// Points the forwarder at `frontends`: `set_l4`, then the steering of their ports.
pub fn update(dp: &mut Dataplane, frontends: &[Frontend]) {
    dp.set_l4(frontends).expect("set_l4");
    dp.set_steering(&Steering {
        early_drop: true,
        echo: false,
        pools: vec![
            ("192.0.2.0".parse().unwrap(), "192.0.2.255".parse().unwrap()),
            (
                "2001:db8::".parse().unwrap(),
                "2001:db8::ffff".parse().unwrap(),
            ),
        ],
        ports: frontends
            .iter()
            .map(|f| ServedPort {
                ip: f.ip,
                proto: f.proto,
                port: f.port,
                action: PortAction::L4,
            })
            .collect(),
        local_routes: false,
        snat_ports: SNAT_PORTS,
    })
    .expect("set_steering");
}

/// A frontend of the test Service `default/l4` with source NAT and no affinity.
pub fn frontend(ip: IpAddr, proto: u8, port: u16, backends: &[(SocketAddr, bool)]) -> Frontend {
    let mut backends: Vec<Backend> = backends
        .iter()
        .map(|&(addr, ready)| Backend { addr, ready })
        .collect();
    backends.sort();
    Frontend {
        ip,
        proto,
        port,
        service: ObjectRef::new("Service", "default", "l4"),
        snat: true,
        affinity_timeout: None,
        backends,
    }
}

impl Default for L4Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for L4Lab {
    fn drop(&mut self) {
        // SAFETY: as in `new`: this thread's namespace and CPU mask.
        unsafe {
            libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.cpus);
        }
    }
}
