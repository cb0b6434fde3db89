//! Installs what a fresh machine lacks. Each step checks first, so `setup` is cheap to repeat.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Debian packages the tests and the lab drive, keyed by a binary each provides.
const PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("arping", "iputils-arping"),
    ("ndisc6", "ndisc6"),
    ("ping", "iputils-ping"),
    ("setpriv", "util-linux"),
    ("curl", "curl"),
    // The proxy tests' HTTP/2 load generator.
    ("h2load", "nghttp2-client"),
    // `cargo xtask image`: the C compiler for ring's C code in the static (musl) build.
    ("musl-gcc", "musl-tools"),
];

pub fn all() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages()
}

fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `-Z build-std=core` needs the nightly toolchain's sources.
fn rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))
        .context("the nightly toolchain is needed to build the eBPF programs (`rustup toolchain install nightly`)")?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to the nightly toolchain");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// bpf-linker's prebuilt downloads are not reachable here; it builds from crates.io when linked
/// against the nightly toolchain's own libLLVM (see shared/toolchain.md).
fn bpf_linker() -> Result<()> {
    if have("bpf-linker") {
        return Ok(());
    }
    eprintln!("xtask: building bpf-linker against nightly's LLVM (about a minute)");
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = format!("{}/lib", sysroot.trim());
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {lib}"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find_map(|name| {
            let stem = name.strip_prefix("lib")?.strip_suffix(".so")?;
            (stem.starts_with("LLVM-") && stem.contains("-rust-")).then(|| stem.to_owned())
        })
        .with_context(|| format!("no libLLVM-*-rust-*.so in {lib}"))?;
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV did not print an LLVM version")?
        .to_owned();
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major},no-llvm-linking"))
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-L{lib} -C link-arg=-l{llvm} -C link-arg=-Wl,-rpath,{lib}"),
        ))
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(bin, _)| !have(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing Debian packages {missing:?}: install them (apt-get install {})",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {missing:?}");
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
