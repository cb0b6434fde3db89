//! lbgw's eBPF programs. The binary target (`main.rs`) is what the kernel loads; this library
//! only exists so that host tooling (clippy, rust-analyzer) can see the crate.
#![no_std]
