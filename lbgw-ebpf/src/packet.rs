//! Bounds-checked access to the frame.
//!
//! The verifier accepts a packet access only after a comparison against `data_end` on the
//! same pointer, so every read and write goes through [`ptr_at`], which does exactly that.

use aya_ebpf::programs::XdpContext;
use lbgw_common::Counter;

/// What the program decided for a frame.
#[derive(Clone, Copy)]
pub enum Verdict {
    /// The frame was rewritten into a reply: send it back out of the ingress interface.
    Tx,
    /// Hand the frame to the kernel stack, counting why.
    Pass(Counter),
    /// Drop the frame, counting why.
    Drop(Counter),
}

/// A pointer to a `T` at `offset` bytes into the frame, or `None` if the frame is too short.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Length of the frame in bytes.
#[inline(always)]
pub fn len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}
