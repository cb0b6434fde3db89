//! `cargo xtask image --output DIR`: a container image without a container engine.
//!
//! lbgw is built as a static binary (`x86_64-unknown-linux-musl`) and written as an OCI image
//! layout (OCI Image Layout Specification v1.0: `oci-layout`, `index.json`, `blobs/sha256/`)
//! with one gzip-compressed tar layer holding `/usr/local/bin/lbgw`. The layout loads with
//! `skopeo copy oci:DIR docker://...`, `crane push DIR ...` or `ctr image import` (after
//! `tar -C DIR -cf image.tar .`).
//!
//! The image is reproducible: file times are `SOURCE_DATE_EPOCH` (0 when unset), owners are
//! root, and the gzip header carries no time or name, so the same binary gives the same
//! digests. [`verify_layout`] re-reads a layout and checks every digest and size.
use std::{
    fs,
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Where the binary lives in the image.
pub const BINARY_PATH: &str = "usr/local/bin/lbgw";
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// A blob's descriptor fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_blob(dir: &Path, data: &[u8]) -> Result<Blob> {
    let hex = sha256_hex(data);
    let path = dir.join("blobs/sha256").join(&hex);
    fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    Ok(Blob {
        digest: format!("sha256:{hex}"),
        size: data.len() as u64,
    })
}

/// The uncompressed layer: `/usr/local/bin/lbgw` (0755) and its parent directories, and an
/// empty `/tmp` (1777).
fn layer_tar(binary: &[u8], mtime: u64) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_path(path)?;
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        header.set_cksum();
        tar.append(&header, std::io::empty())?;
        Ok(())
    };
    for path in ["usr/", "usr/local/", "usr/local/bin/"] {
        dir(&mut tar, path, 0o755)?;
    }
    dir(&mut tar, "tmp/", 0o1777)?;
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_path(BINARY_PATH)?;
    header.set_mode(0o755);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(binary.len() as u64);
    header.set_cksum();
    tar.append(&header, binary)?;
    Ok(tar.into_inner()?)
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    // No name and mtime 0 in the gzip header (RFC 1952 section 2.3.1): reproducible output.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

fn rfc3339(epoch: u64) -> String {
    // Days to civil date (Howard Hinnant's algorithm), enough for a timestamp field.
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Writes an OCI image layout for `binary` into `out` (created; must be empty or absent),
/// tagged `reference` (`org.opencontainers.image.ref.name`). Returns the manifest's blob.
pub fn write_layout(binary: &Path, out: &Path, reference: &str, mtime: u64) -> Result<Blob> {
    let bytes = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    if out.exists() {
        ensure!(
            fs::read_dir(out)?.next().is_none(),
            "{} is not empty",
            out.display()
        );
    }
    fs::create_dir_all(out.join("blobs/sha256"))
        .with_context(|| format!("creating {}", out.display()))?;
    let tar = layer_tar(&bytes, mtime)?;
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let layer = write_blob(out, &gzip(&tar)?)?;
    let created = rfc3339(mtime);
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": [format!("/{BINARY_PATH}")],
            "Cmd": ["run", "--kubernetes"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Labels": {
                "org.opencontainers.image.title": "lbgw",
                "org.opencontainers.image.description": "eBPF-powered L4 load balancer and Gateway API data plane",
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "cargo xtask image"}],
    });
    let config = write_blob(out, &serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size}],
    });
    let manifest = write_blob(out, &serde_json::to_vec(&manifest)?)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": manifest.digest,
            "size": manifest.size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": reference},
        }],
    });
    fs::write(out.join("index.json"), serde_json::to_vec_pretty(&index)?)?;
    fs::write(
        out.join("oci-layout"),
        serde_json::to_vec(&json!({"imageLayoutVersion": "1.0.0"}))?,
    )?;
    Ok(manifest)
}

/// Reads a blob named by a descriptor and checks its size and digest.
fn read_blob(dir: &Path, descriptor: &Value) -> Result<Vec<u8>> {
    let digest = descriptor["digest"]
        .as_str()
        .context("descriptor without digest")?;
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest algorithm in {digest}"))?;
    let path = dir.join("blobs/sha256").join(hex);
    let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        sha256_hex(&data) == hex,
        "{}: content does not match its digest",
        path.display()
    );
    ensure!(
        Some(data.len() as u64) == descriptor["size"].as_u64(),
        "{}: size {} but the descriptor says {}",
        path.display(),
        data.len(),
        descriptor["size"]
    );
    Ok(data)
}

/// What [`verify_layout`] found.
#[derive(Debug)]
pub struct Verified {
    /// The binary's bytes, from the layer.
    pub binary: Vec<u8>,
    /// Its mode in the layer.
    pub mode: u32,
    /// Blobs checked.
    pub blobs: usize,
}

/// Checks an OCI layout: `oci-layout` version, every descriptor's digest and size (index →
/// manifest → config and layers), media types, and that the config's `diff_ids` are the
/// digests of the uncompressed layers. Returns the binary found in the layer.
pub fn verify_layout(dir: &Path) -> Result<Verified> {
    let layout: Value = serde_json::from_slice(&fs::read(dir.join("oci-layout"))?)?;
    ensure!(
        layout["imageLayoutVersion"] == "1.0.0",
        "oci-layout: {layout}"
    );
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json"))?)?;
    ensure!(index["schemaVersion"] == 2, "index.json: schemaVersion");
    let manifests = index["manifests"]
        .as_array()
        .context("index.json: manifests")?;
    ensure!(manifests.len() == 1, "index.json: one manifest expected");
    ensure!(
        manifests[0]["mediaType"] == MANIFEST_TYPE,
        "index.json: manifest mediaType"
    );
    let manifest: Value = serde_json::from_slice(&read_blob(dir, &manifests[0])?)?;
    ensure!(manifest["mediaType"] == MANIFEST_TYPE, "manifest mediaType");
    ensure!(
        manifest["config"]["mediaType"] == CONFIG_TYPE,
        "config mediaType"
    );
    let config: Value = serde_json::from_slice(&read_blob(dir, &manifest["config"])?)?;
    let layers = manifest["layers"].as_array().context("manifest: layers")?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .context("config: diff_ids")?;
    ensure!(layers.len() == diff_ids.len(), "one diff_id per layer");
    let mut found = None;
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        ensure!(layer["mediaType"] == LAYER_TYPE, "layer mediaType");
        let compressed = read_blob(dir, layer)?;
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut tar)?;
        ensure!(
            diff_id.as_str() == Some(&format!("sha256:{}", sha256_hex(&tar))),
            "config diff_id {diff_id} is not the digest of the uncompressed layer"
        );
        let mut archive = tar::Archive::new(&tar[..]);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.path()?.as_os_str() == BINARY_PATH {
                let mode = entry.header().mode()?;
                let mut binary = Vec::new();
                entry.read_to_end(&mut binary)?;
                found = Some((binary, mode));
            }
        }
    }
    let (binary, mode) = found.with_context(|| format!("no /{BINARY_PATH} in the layers"))?;
    Ok(Verified {
        binary,
        mode,
        blobs: 2 + layers.len(),
    })
}

/// Builds the static binary: `cargo build --release --target x86_64-unknown-linux-musl -p
/// lbgw` (the eBPF object is built for bpfel by lbgw's build script as always).
pub fn build_static(root: &Path, cargo: &str) -> Result<PathBuf> {
    let status = Command::new("rustup")
        .args(["target", "add", MUSL_TARGET])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("rustup target add {MUSL_TARGET} failed ({status})");
    }
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "lbgw", "--target", MUSL_TARGET])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the static lbgw failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join(MUSL_TARGET).join("release").join("lbgw"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout written from a stand-in binary verifies (digests, sizes, diff_ids, the file
    /// and its mode); the same input gives the same digests; a corrupted blob is detected.
    #[test]
    fn layout_digests_verify_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("lbgw");
        let content: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        fs::write(&binary, &content).unwrap();
        let out = dir.path().join("image");
        let manifest = write_layout(&binary, &out, "lbgw:test", 0).unwrap();
        let verified = verify_layout(&out).unwrap();
        assert_eq!(verified.binary, content);
        assert_eq!(verified.mode, 0o755);
        assert_eq!(verified.blobs, 3);
        assert_eq!(fs::read_dir(out.join("blobs/sha256")).unwrap().count(), 3);

        let again = dir.path().join("again");
        assert_eq!(
            write_layout(&binary, &again, "lbgw:test", 0).unwrap(),
            manifest,
            "reproducible"
        );
        assert!(
            write_layout(&binary, &again, "lbgw:test", 0).is_err(),
            "refuses a non-empty output"
        );

        // Flip one byte of the largest blob (the layer).
        let mut blobs: Vec<_> = fs::read_dir(out.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        blobs.sort_by_key(|p| fs::metadata(p).unwrap().len());
        let layer = blobs.last().unwrap();
        let mut data = fs::read(layer).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        fs::write(layer, data).unwrap();
        let err = verify_layout(&out).unwrap_err().to_string();
        assert!(err.contains("does not match its digest"), "{err}");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }
}
