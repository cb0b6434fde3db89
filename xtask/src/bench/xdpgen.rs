//! A packet generator that outruns the receiver: the kernel's own XDP frame path, driven by
//! `BPF_PROG_TEST_RUN` in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18,
//! net/bpf/test_run.c), as `xdp-trafficgen` does. The kernel builds each frame from the given
//! bytes in a page pool, runs a four-instruction XDP program that redirects it to a veth, and
//! the veth hands the `xdp_frame` to its peer's NAPI poll: no socket, no copy and no
//! `sk_buff` on the way, like a NIC driver delivering frames. The peer must have a native XDP
//! program attached, or veth drops redirected frames (drivers/net/veth.c, `veth_xdp_xmit`),
//! hence [`attach_pass`] for configurations without lbgw.
//!
//! The programs are assembled here (struct bpf_insn, include/uapi/linux/bpf.h) rather than
//! built as a second eBPF object: each is a handful of instructions.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP.
const BPF_XDP: u32 = 37;
/// `BPF_PROG_TEST_RUN` flag: run on real frames that XDP_TX / XDP_REDIRECT send out.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE` (include/uapi/linux/if_link.h): native mode.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `BPF_FUNC_redirect`.
const BPF_FUNC_REDIRECT: i32 = 23;
/// XDP_PASS.
const XDP_PASS: i32 = 2;
/// Frames per batch of a live test run (the kernel's maximum is 256).
const BATCH: u32 = 256;

/// `union bpf_attr`, large enough for the commands used here; all-zero but for the fields a
/// command reads.
#[repr(C, align(8))]
struct Attr([u32; 32]);

impl Attr {
    fn new() -> Self {
        Self([0; 32])
    }

    fn u64_at(&mut self, word: usize, v: u64) {
        self.0[word] = v as u32;
        self.0[word + 1] = (v >> 32) as u32;
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<i32> {
    // SAFETY: `attr` is a valid, zero-initialised bpf_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

/// One `struct bpf_insn`: opcode, registers (dst in the low nibble), offset, immediate.
fn insn(code: u8, dst: u8, imm: i32) -> u64 {
    u64::from(code) | (u64::from(dst & 0xf) << 8) | (u64::from(imm as u32) << 32)
}

/// `BPF_ALU64 | BPF_MOV | BPF_K`: dst = imm.
fn mov(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, imm)
}

/// `BPF_JMP | BPF_CALL` of helper `func`.
fn call(func: i32) -> u64 {
    insn(0x85, 0, func)
}

/// `BPF_JMP | BPF_EXIT`.
fn exit() -> u64 {
    insn(0x95, 0, 0)
}

fn load(name: &str, insns: &[u64]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = Attr::new();
    attr.0[0] = BPF_PROG_TYPE_XDP;
    attr.0[1] = insns.len() as u32;
    attr.u64_at(2, insns.as_ptr() as u64);
    attr.u64_at(4, license.as_ptr() as u64);
    // prog_name: 16 bytes from word 12.
    let mut raw = [0u8; 16];
    for (d, s) in raw.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    for (i, chunk) in raw.chunks(4).enumerate() {
        attr.0[12 + i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    // expected_attach_type.
    attr.0[17] = BPF_XDP;
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel returned a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The generator: an XDP program that redirects every frame to `ifindex` (an interface of the
/// calling thread's network namespace).
pub struct Generator {
    prog: OwnedFd,
}

impl Generator {
    pub fn new(ifindex: u32) -> io::Result<Self> {
        let prog = load(
            "lbgw_flood_gen",
            &[
                mov(1, ifindex as i32),
                mov(2, 0),
                call(BPF_FUNC_REDIRECT),
                exit(),
            ],
        )?;
        Ok(Self { prog })
    }

    /// Sends `repeat` copies of `frame` through the program (one test run); returns the
    /// kernel's duration in nanoseconds. The thread's network namespace is the one whose
    /// interface index the program redirects to.
    pub fn send(&self, frame: &[u8], repeat: u32) -> io::Result<u32> {
        let mut attr = Attr::new();
        attr.0[0] = self.prog.as_raw_fd() as u32;
        attr.0[2] = frame.len() as u32;
        attr.u64_at(4, frame.as_ptr() as u64);
        attr.0[8] = repeat;
        attr.0[16] = BPF_F_TEST_XDP_LIVE_FRAMES;
        attr.0[18] = BATCH;
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(attr.0[9])
    }
}

/// Attaches an XDP program that passes every frame to `ifindex` (of the calling thread's
/// network namespace) in native mode, for as long as the returned link fd is open: what veth
/// needs to accept redirected frames when no other program is attached.
pub fn attach_pass(ifindex: u32) -> io::Result<OwnedFd> {
    let prog = load("lbgw_flood_pass", &[mov(0, XDP_PASS), exit()])?;
    let mut attr = Attr::new();
    attr.0[0] = prog.as_raw_fd() as u32;
    attr.0[1] = ifindex;
    attr.0[2] = BPF_XDP;
    attr.0[3] = XDP_FLAGS_DRV_MODE;
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: the kernel returned a new fd we own; the link holds the program.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_encoded_as_the_kernel_reads_them() {
        // struct bpf_insn in memory (little-endian): code, dst_reg in the low nibble and
        // src_reg in the high one, 16-bit offset, 32-bit immediate. r1 = 7; call 23; exit.
        assert_eq!(mov(1, 7).to_le_bytes(), [0xb7, 0x01, 0, 0, 7, 0, 0, 0]);
        assert_eq!(call(23).to_le_bytes(), [0x85, 0, 0, 0, 23, 0, 0, 0]);
        assert_eq!(exit().to_le_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }
}
