//! The L4 forwarder's maps: frontends get a stable service index, endpoints a stable backend
//! slot, and each frontend's Maglev ring is written into the generation the XDP program is not
//! reading, then made live by flipping the service's `generation` — so a ring change is atomic
//! for the data path (a packet sees the whole old table or the whole new one) and never
//! interrupts traffic.
//!
//! Flows keep their backend across ring changes (the per-CPU connection table); a flow whose
//! backend slot was removed or reused is re-balanced by the program.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuHashMap, PerCpuValues};
use lbgw_common::{
    FlowKey, FlowState, L4_BACKEND_F_EXISTS, L4_BACKEND_F_READY, L4_RING_ELEMS,
    L4_RING_GENERATIONS, L4_RING_LANES, L4_RING_SIZE, L4_SVC_F_ACTIVE, L4_SVC_F_AFFINITY,
    L4_SVC_F_SNAT, L4Backend, L4Service, MAX_L4_BACKENDS, MAX_L4_SERVICES, names,
};
use tracing::{debug, warn};

use super::{DataplaneError, vip_key};
use crate::l4::{Frontend, maglev};

/// A frontend's identity: (VIP, protocol, port).
pub type FrontendKey = (IpAddr, u8, u16);

/// What the data plane holds of the L4 forwarder.
#[derive(Default)]
pub(super) struct L4State {
    /// Service index of each frontend.
    pub(super) services: BTreeMap<FrontendKey, ServiceSlot>,
    /// Backend slot of each (service index, endpoint).
    backends: BTreeMap<(u32, SocketAddr), u32>,
    /// Some frontend keeps the client address (`externalTrafficPolicy: Local`).
    pub(super) dnat_only: bool,
    /// The live ring generation of each service index, as found in adopted (pinned) maps.
    adopted_generations: BTreeMap<u32, u32>,
}

pub(super) struct ServiceSlot {
    pub(super) index: u32,
    generation: u32,
    /// The live ring (backend slots), to skip rewriting an unchanged one.
    ring: Vec<u16>,
    flags: u32,
    affinity_timeout: u32,
}

/// The L4 maps.
pub(super) struct L4Maps {
    pub(super) services: Array<MapData, L4Service>,
    pub(super) backends: Array<MapData, L4Backend>,
    pub(super) ring: Array<MapData, [u16; 4]>,
}

impl L4Maps {
    fn set_service(&mut self, index: u32, value: L4Service) -> Result<(), DataplaneError> {
        self.services
            .set(index, value, 0)
            .map_err(map_err(names::L4_SERVICES))
    }

    fn set_backend(&mut self, slot: u32, value: L4Backend) -> Result<(), DataplaneError> {
        self.backends
            .set(slot, value, 0)
            .map_err(map_err(names::L4_BACKENDS))
    }

    fn write_ring(
        &mut self,
        index: u32,
        generation: u32,
        ring: &[u16],
    ) -> Result<(), DataplaneError> {
        let base = (index * L4_RING_GENERATIONS + generation) * L4_RING_ELEMS;
        for (i, lanes) in ring.chunks(L4_RING_LANES as usize).enumerate() {
            let mut value = [0u16; 4];
            value[..lanes.len()].copy_from_slice(lanes);
            self.ring
                .set(base + i as u32, value, 0)
                .map_err(map_err(names::L4_RING))?;
        }
        Ok(())
    }
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

impl super::Dataplane {
    /// Sets the time every known L4 flow last looked up its route (`FlowState::refreshed_ns`,
    /// on every CPU and in the shared table) to `monotonic_ns`, a `CLOCK_MONOTONIC` time like
    /// `bpf_ktime_get_ns()`. 0 makes each flow ask the FIB again on its next packet instead
    /// of within [`lbgw_common::L4_ROUTE_TTL_NS`] (after a backend's neighbour entry or route
    /// changed); a time in the future holds the cached routes until then. The fixture tests
    /// control the route cache's clock with it. Returns the number of flows written.
    pub fn set_l4_route_time(&mut self, monotonic_ns: u64) -> Result<usize, DataplaneError> {
        let mut written = 0;
        let per_cpu = self
            .ebpf
            .map_mut(names::L4_FLOWS)
            .ok_or(DataplaneError::Missing {
                what: "map",
                name: names::L4_FLOWS,
            })?;
        let mut flows = PerCpuHashMap::<_, FlowKey, FlowState>::try_from(per_cpu)
            .map_err(map_err(names::L4_FLOWS))?;
        let keys: Vec<FlowKey> = flows.keys().filter_map(Result::ok).collect();
        for key in keys {
            // An entry can be evicted meanwhile (LRU): skip it.
            let Ok(values) = flows.get(&key, 0) else {
                continue;
            };
            let values: Vec<FlowState> = values
                .iter()
                .map(|v| FlowState {
                    refreshed_ns: monotonic_ns,
                    ..*v
                })
                .collect();
            let values = PerCpuValues::try_from(values)
                .map_err(|e| map_err(names::L4_FLOWS)(MapError::IoError(e)))?;
            flows
                .insert(key, values, 0)
                .map_err(map_err(names::L4_FLOWS))?;
            written += 1;
        }
        let shared = self
            .ebpf
            .map_mut(names::L4_FLOWS_SHARED)
            .ok_or(DataplaneError::Missing {
                what: "map",
                name: names::L4_FLOWS_SHARED,
            })?;
        let mut flows = HashMap::<_, FlowKey, FlowState>::try_from(shared)
            .map_err(map_err(names::L4_FLOWS_SHARED))?;
        let entries: Vec<(FlowKey, FlowState)> = flows.iter().filter_map(Result::ok).collect();
        for (key, value) in entries {
            let value = FlowState {
                refreshed_ns: monotonic_ns,
                ..value
            };
            flows
                .insert(key, value, 0)
                .map_err(map_err(names::L4_FLOWS_SHARED))?;
            written += 1;
        }
        Ok(written)
    }
}

impl L4State {
    /// Makes the maps hold exactly `frontends`. Frontends beyond the map's capacity are
    /// reported and left out (their ports are then passed to the stack).
    pub(super) fn sync(
        &mut self,
        maps: &mut L4Maps,
        frontends: &[Frontend],
    ) -> Result<(), DataplaneError> {
        let wanted: BTreeMap<FrontendKey, &Frontend> = frontends
            .iter()
            .map(|f| ((f.ip, f.proto, f.port), f))
            .collect();
        self.dnat_only = frontends.iter().any(|f| !f.snat);

        // Frontends gone: their service entry goes inactive, their backend slots free.
        let gone: Vec<FrontendKey> = self
            .services
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(slot) = self.services.remove(&key) {
                maps.set_service(slot.index, L4Service::default())?;
                let stale: Vec<(u32, SocketAddr)> = self
                    .backends
                    .range((slot.index, min_addr())..)
                    .take_while(|((s, _), _)| *s == slot.index)
                    .map(|(k, _)| *k)
                    .collect();
                for k in stale {
                    if let Some(b) = self.backends.remove(&k) {
                        maps.set_backend(b, L4Backend::default())?;
                    }
                }
            }
        }

        for (key, frontend) in wanted {
            let index = match self.services.get(&key) {
                Some(slot) => slot.index,
                None => {
                    let used: BTreeSet<u32> = self.services.values().map(|s| s.index).collect();
                    let Some(index) = (0..MAX_L4_SERVICES).find(|i| !used.contains(i)) else {
                        warn!(
                            service = %frontend.service,
                            ip = %frontend.ip,
                            port = frontend.port,
                            "too many L4 frontends (the data plane holds {MAX_L4_SERVICES}); this one is passed to the kernel"
                        );
                        continue;
                    };
                    // Write the ring into the generation the program is not reading: the
                    // adopted map's live one may be either.
                    let live = self.adopted_generations.get(&index).copied().unwrap_or(1);
                    self.services.insert(
                        key,
                        ServiceSlot {
                            index,
                            generation: live,
                            ring: Vec::new(),
                            flags: 0,
                            affinity_timeout: 0,
                        },
                    );
                    index
                }
            };
            self.sync_frontend(maps, index, key, frontend)?;
        }
        Ok(())
    }

    fn sync_frontend(
        &mut self,
        maps: &mut L4Maps,
        index: u32,
        key: FrontendKey,
        frontend: &Frontend,
    ) -> Result<(), DataplaneError> {
        // Backend slots: kept for endpoints that stay; removed endpoints free theirs (their
        // flows re-balance); new endpoints take free ones.
        let wanted: BTreeMap<SocketAddr, bool> = frontend
            .backends
            .iter()
            .map(|b| (b.addr, b.ready))
            .collect();
        let stale: Vec<(u32, SocketAddr)> = self
            .backends
            .range((index, min_addr())..)
            .take_while(|((s, _), _)| *s == index)
            .filter(|((_, addr), _)| !wanted.contains_key(addr))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(slot) = self.backends.remove(&k) {
                maps.set_backend(slot, L4Backend::default())?;
            }
        }
        let mut slots: Vec<(SocketAddr, u32, bool)> = Vec::new();
        for (&addr, &ready) in &wanted {
            let slot = match self.backends.get(&(index, addr)) {
                Some(&slot) => slot,
                None => {
                    let used: BTreeSet<u32> = self.backends.values().copied().collect();
                    let Some(slot) = (0..MAX_L4_BACKENDS).find(|s| !used.contains(s)) else {
                        warn!(
                            service = %frontend.service,
                            backend = %addr,
                            "too many L4 backends (the data plane holds {MAX_L4_BACKENDS}); endpoint left out"
                        );
                        continue;
                    };
                    self.backends.insert((index, addr), slot);
                    slot
                }
            };
            let mut flags = L4_BACKEND_F_EXISTS;
            if ready {
                flags |= L4_BACKEND_F_READY;
            }
            maps.set_backend(
                slot,
                L4Backend {
                    addr: vip_key(addr.ip()).addr,
                    port_be: addr.port().to_be(),
                    flags,
                    _pad: 0,
                    service: index,
                },
            )?;
            slots.push((addr, slot, ready));
        }

        // The ring over the ready endpoints; every node computes the same one (names are the
        // endpoint addresses, order-independent).
        let names: Vec<String> = slots.iter().map(|(addr, _, _)| addr.to_string()).collect();
        let weighted: Vec<maglev::Weighted<'_>> = slots
            .iter()
            .zip(&names)
            .map(|((_, _, ready), name)| maglev::Weighted {
                name,
                weight: u32::from(*ready),
            })
            .collect();
        let table = maglev::build(&weighted, L4_RING_SIZE).map_err(DataplaneError::Maglev)?;
        let ring: Vec<u16> = table.iter().map(|&i| slots[i as usize].1 as u16).collect();

        let mut flags = if ring.is_empty() { 0 } else { L4_SVC_F_ACTIVE };
        if frontend.snat {
            flags |= L4_SVC_F_SNAT;
        }
        if frontend.affinity_timeout.is_some() {
            flags |= L4_SVC_F_AFFINITY;
        }
        let affinity_timeout = frontend.affinity_timeout.unwrap_or(0);
        let Some(state) = self.services.get_mut(&key) else {
            return Ok(());
        };
        let mut generation = state.generation;
        if ring != state.ring {
            // Write the idle generation, then flip: the program reads the service entry once
            // per new flow, so it sees either the old table or the new one, whole.
            generation = 1 - state.generation;
            if !ring.is_empty() {
                maps.write_ring(index, generation, &ring)?;
            }
            debug!(
                service = %frontend.service,
                ip = %frontend.ip,
                port = frontend.port,
                backends = slots.len(),
                generation,
                "Maglev ring rebuilt"
            );
        }
        if generation != state.generation
            || flags != state.flags
            || affinity_timeout != state.affinity_timeout
        {
            maps.set_service(
                index,
                L4Service {
                    flags,
                    generation,
                    affinity_timeout_s: affinity_timeout,
                    _pad: 0,
                },
            )?;
        }
        state.generation = generation;
        state.ring = ring;
        state.flags = flags;
        state.affinity_timeout = affinity_timeout;
        Ok(())
    }

    /// Reads what a previous lbgw left in pinned maps: which ring generation each service
    /// index has live.
    pub(super) fn adopt(&mut self, maps: &L4Maps) {
        for index in 0..MAX_L4_SERVICES {
            if let Ok(service) = maps.services.get(&index, 0)
                && service.flags != 0
            {
                self.adopted_generations
                    .insert(index, service.generation & 1);
            }
        }
    }

    /// The backend addresses of every frontend (for neighbour resolution).
    pub(super) fn backend_ips(&self) -> BTreeSet<IpAddr> {
        self.backends.keys().map(|(_, addr)| addr.ip()).collect()
    }
}

fn min_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0)
}
