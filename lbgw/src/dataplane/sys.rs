//! Host facts lbgw needs before touching the kernel, read from sysfs and procfs so that the
//! logic above stays testable without privileges.

use std::{fs, path::Path};

/// Errors finding out about the host.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("interface {0:?} not found (`ip link show` lists the interfaces)")]
    NoSuchInterface(String),
    #[error("interface {iface}: cannot read {what}: {detail}")]
    Interface {
        iface: String,
        what: &'static str,
        detail: String,
    },
    #[error(
        "lbgw needs root, or the capabilities CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, to load \
         XDP programs (run it with sudo, or grant them, e.g. in the DaemonSet's securityContext)"
    )]
    NotPrivileged,
}

/// A network interface as lbgw uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// veth devices need special care in native XDP mode (see `AttachMode::Auto`).
    pub is_veth: bool,
}

impl Interface {
    /// Looks an interface up by name in this network namespace's sysfs.
    pub fn by_name(name: &str) -> Result<Self, SysError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(SysError::NoSuchInterface(name.to_owned()));
        }
        let dir = Path::new("/sys/class/net").join(name);
        if !dir.exists() {
            return Err(SysError::NoSuchInterface(name.to_owned()));
        }
        let read = |what: &'static str| {
            fs::read_to_string(dir.join(what))
                .map(|s| s.trim().to_owned())
                .map_err(|e| SysError::Interface {
                    iface: name.to_owned(),
                    what,
                    detail: e.to_string(),
                })
        };
        let ifindex = read("ifindex")?
            .parse()
            .map_err(|e: std::num::ParseIntError| SysError::Interface {
                iface: name.to_owned(),
                what: "ifindex",
                detail: e.to_string(),
            })?;
        let address = read("address")?;
        let mac = parse_mac(&address).ok_or_else(|| SysError::Interface {
            iface: name.to_owned(),
            what: "address",
            detail: format!("{address:?} is not an Ethernet MAC address (lbgw answers ARP/NDP on Ethernet links only)"),
        })?;
        let is_veth = driver_name(name).as_deref() == Some("veth");
        Ok(Self {
            name: name.to_owned(),
            ifindex,
            mac,
            is_veth,
        })
    }
}

/// The driver of an interface as `ethtool -i` reports it (`SIOCETHTOOL` / `ETHTOOL_GDRVINFO`),
/// or `None` when the device does not say.
pub fn driver_name(iface: &str) -> Option<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    // struct ethtool_drvinfo (linux/ethtool.h).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut DrvInfo,
        _pad: [u8; 16],
    }
    if iface.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: all-zero is a valid DrvInfo.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut info,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // SAFETY: a plain datagram socket used only for the ioctl and closed below; the ioctl
    // writes into `info`, which outlives the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let rc = libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut req);
        libc::close(fd);
        if rc != 0 {
            return None;
        }
    }
    let end = info
        .driver
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(info.driver.len());
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Capability bits (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks that this process may load and attach XDP programs: CAP_SYS_ADMIN (which covers
/// BPF on every kernel), or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON (Linux 5.8+).
pub fn check_privileges() -> Result<(), SysError> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) && has(CAP_NET_ADMIN)
        || has(CAP_BPF) && has(CAP_NET_ADMIN) && has(CAP_PERFMON)
    {
        Ok(())
    } else {
        Err(SysError::NotPrivileged)
    }
}

/// `deadline` on the clock XDP programs read (`bpf_ktime_get_ns`: `CLOCK_MONOTONIC` in ns,
/// which is also the clock of [`std::time::Instant`] on Linux); at least 1, as 0 means "no
/// deadline" to the program. A deadline already passed is now.
pub fn monotonic_ns(deadline: std::time::Instant) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now = u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
        + u64::try_from(ts.tv_nsec).unwrap_or(0);
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    now.saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = parse_mac("02:00:5e:10:00:01").unwrap();
        assert_eq!(mac, [2, 0, 0x5e, 0x10, 0, 1]);
        assert_eq!(format_mac(&mac), "02:00:5e:10:00:01");
        assert_eq!(parse_mac("02:00:5e:10:00"), None);
        assert_eq!(parse_mac("02:00:5e:10:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:5e:10:00:01"), None);
        assert_eq!(
            parse_mac("00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00"),
            None
        );
    }

    #[test]
    fn missing_interface_is_named() {
        let err = Interface::by_name("lbgw-no-such0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface \"lbgw-no-such0\" not found (`ip link show` lists the interfaces)"
        );
        assert!(matches!(
            Interface::by_name("../etc"),
            Err(SysError::NoSuchInterface(_))
        ));
    }
}
