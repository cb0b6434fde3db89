//! Shared helpers for lbgw's integration tests: packet builders for the XDP fixture tables,
//! and (in [`netns`]) self-cleaning network namespaces.
pub mod daemon;
pub mod fixtures;
pub mod l4lab;
pub mod lan;
pub mod netns;
pub mod packets;
pub mod pins;
pub mod proxy;

/// Privileged tests (BPF_PROG_TEST_RUN, namespaces) need root. They fail loudly rather than
/// skip, so a run that silently tested nothing cannot pass: run them with `cargo xtask test`.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (BPF and network namespaces): run `cargo xtask test` as root"
    );
}

/// Path of the `lbgw` binary the end-to-end tests run: `LBGW_BIN` if set (xtask sets it),
/// else `target/<profile>/lbgw` next to this test executable.
pub fn lbgw_bin() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("LBGW_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/lbgw
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin = profile_dir.join("lbgw");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build -p lbgw`) or set LBGW_BIN; `cargo xtask test` does both",
        bin.display()
    );
    bin
}
