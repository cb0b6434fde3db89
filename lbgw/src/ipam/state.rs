//! The IPAM state file: the addresses handed out, so that objects keep them across restarts.
use std::{
    fs,
    io::{self, Write as _},
    path::Path,
};

use serde::{Deserialize, Serialize};

use super::{IpamError, Vip};
use crate::config::ObjectRef;

/// What was allocated, as persisted between runs (JSON).
///
/// ```json
/// {"version": 1, "allocations": [{"ip": "192.0.2.7", "owner": {"kind": "Gateway", "namespace": "ai", "name": "ai-gateway"}, "pool": "homelab"}]}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The format version; [`State::VERSION`].
    pub version: u32,
    /// The allocations, sorted by owner then address.
    pub allocations: Vec<Vip>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: State::VERSION,
            allocations: Vec::new(),
        }
    }
}

impl State {
    /// The format version this lbgw reads and writes.
    pub const VERSION: u32 = 1;

    /// A state holding `allocations` (sorted).
    pub fn new(mut allocations: Vec<Vip>) -> State {
        allocations.sort_by(|a, b| (&a.owner, a.ip).cmp(&(&b.owner, b.ip)));
        State {
            version: State::VERSION,
            allocations,
        }
    }

    /// These allocations, then those of `other` that conflict with none of them: neither
    /// their address nor their owner's address of the same family is taken here.
    pub fn merged_with(&self, other: &State) -> State {
        let mut allocations = self.allocations.clone();
        for vip in &other.allocations {
            let taken = self.allocations.iter().any(|mine| {
                mine.ip == vip.ip
                    || (mine.owner == vip.owner && mine.ip.is_ipv4() == vip.ip.is_ipv4())
            });
            if !taken {
                allocations.push(vip.clone());
            }
        }
        State::new(allocations)
    }

    /// Reads the state file. A missing file is an empty state (first start); an unreadable,
    /// corrupt or newer-version file is an error naming the path, never silently discarded, as
    /// that would move every address.
    pub fn load(path: &Path) -> Result<State, IpamError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => {
                return Err(IpamError::StateRead {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let state: State =
            serde_json::from_str(&text).map_err(|source| IpamError::StateCorrupt {
                path: path.to_path_buf(),
                source,
            })?;
        if state.version != State::VERSION {
            return Err(IpamError::StateInvalid {
                path: path.to_path_buf(),
                reason: format!(
                    "format version {} is not supported (this lbgw reads version {})",
                    state.version,
                    State::VERSION
                ),
            });
        }
        Ok(State::new(state.allocations))
    }

    /// Writes the state file atomically: the parent directories are created, the JSON is
    /// written and synced to a temporary file in the same directory, which is then renamed
    /// over `path`; the directory is synced so the rename survives a crash.
    pub fn save(&self, path: &Path) -> Result<(), IpamError> {
        let err = |source| IpamError::StateWrite {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| {
            err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file path",
            ))
        })?;
        fs::create_dir_all(dir).map_err(err)?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| err(io::Error::other(e)))?;
        json.push(b'\n');
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if let Err(source) = written {
            let _ = fs::remove_file(&tmp);
            return Err(err(source));
        }
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)
    }

    /// The allocations of `owner`.
    pub fn of<'a>(&'a self, owner: &'a ObjectRef) -> impl Iterator<Item = &'a Vip> + 'a {
        self.allocations.iter().filter(move |v| &v.owner == owner)
    }
}
