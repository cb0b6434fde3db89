//! Compiles `lbgw-ebpf` for the BPF target (nightly + bpf-linker) and leaves the object in
//! OUT_DIR, where `src/dataplane/object.rs` embeds it. `cargo xtask setup` installs what this
//! needs on a fresh machine.
use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    if which("bpf-linker").is_none() {
        bail!(
            "bpf-linker is not installed: run `cargo xtask setup` (it builds bpf-linker against \
             the nightly toolchain's LLVM and adds nightly's rust-src)"
        );
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("lbgw has no parent directory")?
        .join("lbgw-ebpf");
    let root = root.to_str().context("non-UTF-8 path to lbgw-ebpf")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "lbgw-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
