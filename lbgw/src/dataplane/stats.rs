//! The XDP program's counters: per-CPU values summed into totals.

use std::net::IpAddr;

use aya::maps::{MapData, PerCpuArray};
use lbgw_common::{Counter, VipStats, names};

use super::DataplaneError;

/// Global counters of the XDP program, indexed like [`Counter::ALL`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; Counter::COUNT as usize]);

impl Counters {
    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter as usize]
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, counter) in Counter::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", counter.name(), self.0[i])?;
        }
        Ok(())
    }
}

/// Counters of one VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipCounters {
    pub ip: IpAddr,
    pub arp_replies: u64,
    pub na_replies: u64,
    pub echo_replies: u64,
    pub dropped_unserved: u64,
    pub passed: u64,
    /// Packets to an L4 Service port forwarded to a backend.
    pub forwarded: u64,
    /// Whether the program answers ARP/NDP for it now (announced, deadline not passed).
    pub announced: bool,
}

/// Sums the global counters over CPUs.
pub fn read_counters(map: &PerCpuArray<MapData, u64>) -> Result<Counters, DataplaneError> {
    let mut out = Counters::default();
    for counter in Counter::ALL {
        let values = map
            .get(&(counter as u32), 0)
            .map_err(|source| DataplaneError::Map {
                map: names::COUNTERS,
                source,
            })?;
        out.0[counter as usize] = values.iter().sum();
    }
    Ok(out)
}

/// Sums one VIP's counters over CPUs.
pub fn read_vip(
    map: &PerCpuArray<MapData, VipStats>,
    ip: IpAddr,
    info: &lbgw_common::VipInfo,
) -> Result<VipCounters, DataplaneError> {
    let slot = info.stats_index;
    let values = map.get(&slot, 0).map_err(|source| DataplaneError::Map {
        map: names::VIP_STATS,
        source,
    })?;
    Ok(VipCounters {
        ip,
        arp_replies: values.iter().map(|v| v.arp_replies).sum(),
        na_replies: values.iter().map(|v| v.na_replies).sum(),
        echo_replies: values.iter().map(|v| v.echo_replies).sum(),
        dropped_unserved: values.iter().map(|v| v.dropped_unserved).sum(),
        passed: values.iter().map(|v| v.passed).sum(),
        forwarded: values.iter().map(|v| v.forwarded).sum(),
        announced: info.announced_at(super::sys::monotonic_ns(std::time::Instant::now())),
    })
}

/// The counters of one loaded instance of lbgw's XDP program, found through the kernel's
/// program list (so `lbgw maps` needs no pinning and no running daemon to talk to).
#[derive(Clone, Debug)]
pub struct LoadedReport {
    pub program_id: u32,
    pub counters: Counters,
    pub vips: Vec<VipCounters>,
}

/// Reads the counters of every loaded `lbgw_xdp` program.
pub fn loaded_reports() -> Result<Vec<LoadedReport>, DataplaneError> {
    use aya::maps::{HashMap, Map, MapData};
    use lbgw_common::{VipInfo, VipKey};

    let mut out = Vec::new();
    for program in aya::programs::loaded_programs().flatten() {
        if program.name_as_str() != Some(names::XDP_PROGRAM) {
            continue;
        }
        let Ok(Some(map_ids)) = program.map_ids() else {
            continue;
        };
        let mut vips = None;
        let mut vip_stats = None;
        let mut counters = None;
        for id in map_ids {
            let Ok(data) = MapData::from_id(id) else {
                continue;
            };
            let name = data
                .info()
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_owned));
            let map_err = |source| DataplaneError::Map {
                map: names::VIPS,
                source,
            };
            match name.as_deref() {
                Some(names::VIPS) => {
                    vips = Some(
                        HashMap::<_, VipKey, VipInfo>::try_from(
                            Map::from_map_data(data).map_err(map_err)?,
                        )
                        .map_err(map_err)?,
                    )
                }
                Some(names::VIP_STATS) => {
                    vip_stats = Some(
                        PerCpuArray::<_, VipStats>::try_from(
                            Map::from_map_data(data).map_err(map_err)?,
                        )
                        .map_err(map_err)?,
                    )
                }
                Some(names::COUNTERS) => {
                    counters = Some(
                        PerCpuArray::<_, u64>::try_from(Map::from_map_data(data).map_err(map_err)?)
                            .map_err(map_err)?,
                    )
                }
                _ => {}
            }
        }
        let (Some(vips), Some(vip_stats), Some(counters)) = (vips, vip_stats, counters) else {
            continue;
        };
        let mut report = LoadedReport {
            program_id: program.id(),
            counters: read_counters(&counters)?,
            vips: Vec::new(),
        };
        for entry in vips.iter() {
            let (key, info) = entry.map_err(|source| DataplaneError::Map {
                map: names::VIPS,
                source,
            })?;
            report
                .vips
                .push(read_vip(&vip_stats, key_to_ip(&key), &info)?);
        }
        report.vips.sort_by_key(|v| v.ip);
        out.push(report);
    }
    Ok(out)
}

/// The address a VIP map key stands for (IPv4-mapped keys back to IPv4).
pub fn key_to_ip(key: &lbgw_common::VipKey) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(key.addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}
