//! In-kernel L4 load balancing for LoadBalancer Services: the userspace side that computes
//! what the XDP forwarder needs.
//!
//! - [`maglev`]: the consistent-hashing lookup table of a Service's endpoints.
pub mod maglev;
