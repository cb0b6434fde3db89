//! The eBPF object, compiled from `lbgw-ebpf` by `build.rs` and embedded in the binary so a
//! single file is all a node needs.

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lbgw"));

/// The bytes of the embedded eBPF object (an ELF file for bpfel).
pub fn bytes() -> &'static [u8] {
    OBJECT
}
