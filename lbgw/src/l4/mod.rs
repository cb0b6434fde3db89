//! In-kernel L4 load balancing for LoadBalancer Services: the userspace side that computes
//! what the XDP forwarder (`lbgw-ebpf/src/l4.rs`) needs.
//!
//! - [`services`]: the L4 frontends — (VIP, protocol, port) of each LoadBalancer Service — with
//!   their endpoints, from the configuration and the VIP plan;
//! - [`maglev`]: the consistent-hashing lookup table of a frontend's ready endpoints.
//!
//! The data plane side (indices, rings, generations) is `dataplane::l4`.
pub mod maglev;
pub mod services;

pub use services::{Backend, Frontend, frontends};
