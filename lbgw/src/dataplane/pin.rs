//! Pinning on bpffs, so the data plane outlives the lbgw process: while lbgw restarts or is
//! upgraded, the XDP program keeps answering ARP/NDP and forwarding L4 flows with the same
//! maps (connection and NAT tables included), and the next lbgw adopts them.
//!
//! Layout under the pin directory (default `/sys/fs/bpf/lbgw`), per network namespace since
//! bpffs is shared by all of them:
//!
//! ```text
//! <dir>/netns-<inode>/maps-<object hash>/LBGW_*   maps, pinned by name
//! <dir>/netns-<inode>/xdp-<ifname>                 the XDP link of an interface
//! <dir>/netns-<inode>/sk_lookup                    the sk_lookup link of the namespace
//! ```
//!
//! Maps are keyed by a hash of the eBPF object: an lbgw built from different eBPF code starts
//! with fresh maps (their layout may differ) and swaps its program into the links atomically
//! (`BPF_LINK_UPDATE`); the old maps are removed once the new program is attached.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Where lbgw pins, by default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lbgw";
/// Where bpffs is mounted (by systemd, or by lbgw when nothing is).
pub const BPFFS: &str = "/sys/fs/bpf";
/// bpffs' magic number (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Errors of pinning.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{path} is not on a bpffs mount and mounting bpffs there failed")]
    NoBpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading this process's network namespace (/proc/self/ns/net)")]
    Netns(#[source] io::Error),
    #[error("removing {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Whether and where the data plane is pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// Nothing outlives the process (tests, `--no-pin`).
    None,
    /// Pinned under this directory.
    Dir(PathBuf),
}

/// The pin paths of one network namespace.
#[derive(Clone, Debug)]
pub struct PinPaths {
    /// `<dir>/netns-<inode>`.
    pub root: PathBuf,
}

impl PinPaths {
    /// The paths for the current network namespace under `dir`.
    pub fn new(dir: &Path) -> Result<Self, PinError> {
        let inode = std::fs::metadata("/proc/self/ns/net")
            .map_err(PinError::Netns)?
            .ino();
        Ok(Self {
            root: dir.join(format!("netns-{inode}")),
        })
    }

    /// The map directory for the eBPF object `bytes`.
    pub fn maps(&self, bytes: &[u8]) -> PathBuf {
        self.root.join(format!("maps-{:016x}", fnv1a(bytes)))
    }

    pub fn xdp_link(&self, iface: &str) -> PathBuf {
        self.root.join(format!("xdp-{iface}"))
    }

    pub fn sk_lookup_link(&self) -> PathBuf {
        self.root.join("sk_lookup")
    }

    /// Map directories of other eBPF objects (older lbgw builds), to remove once adopted.
    pub fn stale_maps(&self, current: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p != current
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("maps-"))
            })
            .collect()
    }
}

/// Makes sure `dir` is on bpffs (mounting bpffs at /sys/fs/bpf when nothing is mounted there,
/// as systemd normally does) and exists.
pub fn prepare(dir: &Path) -> Result<(), PinError> {
    let bpffs = Path::new(BPFFS);
    if !is_bpffs(bpffs) && dir.starts_with(bpffs) {
        mount_bpffs(bpffs).map_err(|source| PinError::NoBpffs {
            path: dir.to_owned(),
            source,
        })?;
        // `ip netns exec` remounts /sys in a mount namespace of its own: a bpffs mounted there
        // disappears with the process, and so would the pins.
        tracing::warn!(
            "mounted bpffs at /sys/fs/bpf; if this mount namespace is private to lbgw (as under \
             `ip netns exec`), pinned objects do not outlive it: use --pin-dir on a shared bpffs"
        );
    }
    std::fs::create_dir_all(dir).map_err(|source| PinError::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes only into the struct we pass.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpffs(path: &Path) -> io::Result<()> {
    let target = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: constant C strings and a valid target path.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes a pin directory (or file) and everything in it: pinned maps are freed and pinned
/// links detached once no process holds them.
pub fn remove(path: &Path) -> Result<bool, PinError> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PinError::Remove {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The few bpf(2) commands aya 0.14 keeps to itself: an sk_lookup link created, pinned and
/// updated by hand (aya's `SkLookupLink` cannot be turned into a pinnable `FdLink`).
pub mod sys {
    use std::{
        ffi::CString,
        io,
        os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        path::Path,
    };

    const BPF_OBJ_PIN: libc::c_long = 6;
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_LINK_UPDATE: libc::c_long = 29;
    /// `enum bpf_attach_type`: BPF_SK_LOOKUP.
    const BPF_SK_LOOKUP: u32 = 36;

    /// `union bpf_attr`, large enough for the commands used here, all-zero but for the fields
    /// each command reads (include/uapi/linux/bpf.h).
    #[repr(C, align(8))]
    struct Attr([u32; 32]);

    fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<i32> {
        // SAFETY: `attr` is a valid, zero-initialised bpf_attr of the size we pass.
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

    fn path_attr(path: &Path, fd: u32) -> io::Result<(Attr, CString)> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())?;
        let mut attr = Attr([0; 32]);
        let ptr = c.as_ptr() as u64;
        attr.0[0] = ptr as u32;
        attr.0[1] = (ptr >> 32) as u32;
        attr.0[2] = fd;
        Ok((attr, c))
    }

    /// BPF_OBJ_GET: an fd for a pinned object.
    pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
        let (mut attr, _c) = path_attr(path, 0)?;
        let fd = bpf(BPF_OBJ_GET, &mut attr)?;
        // SAFETY: the kernel returned a new fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// BPF_OBJ_PIN: pins an object at `path`.
    pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
        let (mut attr, _c) = path_attr(path, fd.as_raw_fd() as u32)?;
        bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
    }

    /// BPF_LINK_CREATE for an sk_lookup program on a network namespace.
    pub fn sk_lookup_link(prog: BorrowedFd<'_>, netns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
        let mut attr = Attr([0; 32]);
        attr.0[0] = prog.as_raw_fd() as u32;
        attr.0[1] = netns.as_raw_fd() as u32;
        attr.0[2] = BPF_SK_LOOKUP;
        let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
        // SAFETY: the kernel returned a new fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// BPF_LINK_UPDATE: atomically replaces a link's program.
    pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
        let mut attr = Attr([0; 32]);
        attr.0[0] = link.as_raw_fd() as u32;
        attr.0[1] = prog.as_raw_fd() as u32;
        bpf(BPF_LINK_UPDATE, &mut attr).map(|_| ())
    }
}

/// FNV-1a, 64 bits: a stable fingerprint of the eBPF object.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_directories_follow_the_object_and_old_ones_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PinPaths::new(dir.path()).unwrap();
        let a = paths.maps(b"object a");
        let b = paths.maps(b"object b");
        assert_ne!(a, b);
        assert_eq!(a, paths.maps(b"object a"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(paths.root.join("xdp-eth0"), b"").unwrap();
        assert_eq!(paths.stale_maps(&b), vec![a.clone()]);
        assert!(remove(&a).unwrap());
        assert!(!remove(&a).unwrap());
        assert!(paths.stale_maps(&b).is_empty());
    }
}
