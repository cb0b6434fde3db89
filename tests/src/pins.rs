//! Pinned data planes in tests: a bpffs of the test's own (`ip netns exec` gives lbgw a
//! private /sys, so pins must go where both the test and lbgw see them) and a guard that runs
//! `lbgw cleanup` so a failing test leaves no program attached.
use crate::{lbgw_bin, netns::Netns};

/// A bpffs instance of the test's own, unmounted when dropped.
pub struct Bpffs {
    pub path: std::path::PathBuf,
}

impl Bpffs {
    /// Mounts bpffs at `path` (created).
    pub fn mount(path: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        crate::netns::run(
            std::process::Command::new("mount")
                .args(["-t", "bpf", "bpf"])
                .arg(&path),
        );
        Self { path }
    }

    /// A pin directory inside it, as `--pin-dir` takes it.
    pub fn dir(&self, name: &str) -> String {
        self.path
            .join(name)
            .to_str()
            .expect("UTF-8 path")
            .to_owned()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

/// Runs `lbgw cleanup` for a pin directory when dropped, so a failing test leaves no pinned
/// program behind.
pub struct Cleanup<'a> {
    pub node: &'a Netns,
    pub pin_dir: String,
}

impl Cleanup<'_> {
    /// Runs `lbgw cleanup --pin-dir` in the node's namespace; its output.
    pub fn run(&self) -> String {
        let out = self
            .node
            .cmd(lbgw_bin())
            .args(["cleanup", "--pin-dir", &self.pin_dir])
            .output()
            .expect("lbgw cleanup");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.run();
    }
}
