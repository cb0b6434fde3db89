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
    /// The frame was rewritten for another interface: `bpf_redirect` chose it.
    Redirect(u32),
    /// To be forwarded by the L4 service at the first index, counted in the VIP statistics
    /// slot at the second: the classifier's answer, which the program turns into one of the
    /// above with `l4::forward` (called from the program, not the classifier, so the two
    /// stack frames are not stacked on each other).
    Forward(u32, u32),
    /// Maybe a reply of an L4 backend: the classifier's answer, which the program resolves
    /// with `l4::reverse` (called from the program for the same reason as `l4::forward`).
    Reply,
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
