//! What `cargo xtask bench` runs: which loads, which proxies, extra lbgw builds side by side,
//! seconds per load and rounds. The parsers here are clap value parsers; they only check
//! syntax and names (no file system access), so they are unit-tested as they are.

use std::path::PathBuf;

use super::Load;

/// The proxies the bench can start, in the order they run within a load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxy {
    Lbgw,
    Nginx,
    Haproxy,
}

impl Proxy {
    pub const ALL: [Proxy; 3] = [Proxy::Lbgw, Proxy::Nginx, Proxy::Haproxy];

    pub fn key(self) -> &'static str {
        match self {
            Proxy::Lbgw => "lbgw",
            Proxy::Nginx => "nginx",
            Proxy::Haproxy => "haproxy",
        }
    }
}

/// A second lbgw binary measured as its own target (`--lbgw-also LABEL=PATH`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraLbgw {
    pub label: String,
    pub path: PathBuf,
}

/// A `--loads` list: the selected loads in the bench's own order, each once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loads(pub Vec<Load>);

/// A `--proxies` list: the selected proxies in the bench's own order, each once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxies(pub Vec<Proxy>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("unknown load {given:?} in --loads; the loads are: {valid}")]
    UnknownLoad { given: String, valid: String },
    #[error("unknown proxy {given:?} in --proxies; the proxies are: {valid}")]
    UnknownProxy { given: String, valid: String },
    #[error("{flag} is empty; give a comma-separated list of: {valid}")]
    Empty { flag: &'static str, valid: String },
    #[error("--lbgw-also {given:?}: expected LABEL=PATH, e.g. old=/tmp/lbgw-old")]
    NotLabelPath { given: String },
    #[error(
        "--lbgw-also {given:?}: the label {label:?} must be 1 to 16 ASCII letters, digits, '-', '_' or '.'"
    )]
    BadLabel { given: String, label: String },
    #[error("--lbgw-also {label}={}: no such file", path.display())]
    NoSuchBinary { label: String, path: PathBuf },
    #[error(
        "--lbgw-also label {label:?} is taken (lbgw, nginx, haproxy and every other --lbgw-also label are)"
    )]
    LabelTaken { label: String },
}

fn keys<T>(all: &[T], key: impl Fn(&T) -> &'static str) -> String {
    all.iter().map(key).collect::<Vec<_>>().join(", ")
}

/// Splits a comma-separated list into the members of `all` it names, in `all`'s order.
fn pick<T: Copy + PartialEq>(
    list: &str,
    flag: &'static str,
    all: &[T],
    key: impl Fn(&T) -> &'static str,
    unknown: impl Fn(String, String) -> OptionError,
) -> Result<Vec<T>, OptionError> {
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match all.iter().find(|t| key(t) == name) {
            Some(t) => chosen.push(*t),
            None => return Err(unknown(name.to_owned(), keys(all, &key))),
        }
    }
    if chosen.is_empty() {
        return Err(OptionError::Empty {
            flag,
            valid: keys(all, &key),
        });
    }
    Ok(all.iter().copied().filter(|t| chosen.contains(t)).collect())
}

/// `--loads h1-keepalive,sse`.
pub fn loads(list: &str) -> Result<Loads, OptionError> {
    pick(
        list,
        "--loads",
        &Load::ALL,
        |l| l.key(),
        |given, valid| OptionError::UnknownLoad { given, valid },
    )
    .map(Loads)
}

/// `--proxies lbgw,haproxy`.
pub fn proxies(list: &str) -> Result<Proxies, OptionError> {
    pick(
        list,
        "--proxies",
        &Proxy::ALL,
        |p| p.key(),
        |given, valid| OptionError::UnknownProxy { given, valid },
    )
    .map(Proxies)
}

/// `--lbgw-also LABEL=PATH`. The label becomes a target name in the table and file names in
/// the run's scratch directory, hence the restricted alphabet.
pub fn extra_lbgw(arg: &str) -> Result<ExtraLbgw, OptionError> {
    let Some((label, path)) = arg.split_once('=').filter(|(_, p)| !p.is_empty()) else {
        return Err(OptionError::NotLabelPath {
            given: arg.to_owned(),
        });
    };
    let valid = (1..=16).contains(&label.len())
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(OptionError::BadLabel {
            given: arg.to_owned(),
            label: label.to_owned(),
        });
    }
    Ok(ExtraLbgw {
        label: label.to_owned(),
        path: PathBuf::from(path),
    })
}

/// Everything `cargo xtask bench` was asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub quick: bool,
    pub loads: Option<Loads>,
    pub proxies: Option<Proxies>,
    pub secs: Option<u64>,
    pub rounds: usize,
    pub lbgw_also: Vec<ExtraLbgw>,
}

impl Options {
    /// Checks what the value parsers cannot see alone: labels unique and unlike the proxies'.
    pub fn validate(&self) -> Result<(), OptionError> {
        for (i, extra) in self.lbgw_also.iter().enumerate() {
            let taken = Proxy::ALL.iter().any(|p| p.key() == extra.label)
                || extra.label == "direct"
                || self.lbgw_also[..i].iter().any(|e| e.label == extra.label);
            if taken {
                return Err(OptionError::LabelTaken {
                    label: extra.label.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks that every `--lbgw-also` binary exists.
    pub fn check_binaries(&self) -> Result<(), OptionError> {
        match self.lbgw_also.iter().find(|e| !e.path.is_file()) {
            Some(e) => Err(OptionError::NoSuchBinary {
                label: e.label.clone(),
                path: e.path.clone(),
            }),
            None => Ok(()),
        }
    }

    pub fn loads(&self) -> Vec<Load> {
        self.loads
            .as_ref()
            .map_or_else(|| Load::ALL.to_vec(), |l| l.0.clone())
    }

    pub fn proxies(&self) -> Vec<Proxy> {
        self.proxies
            .as_ref()
            .map_or_else(|| Proxy::ALL.to_vec(), |p| p.0.clone())
    }

    /// A run that leaves out a load or a proxy, or adds other lbgw builds, does not replace
    /// the published figures in docs/bench/.
    pub fn partial(&self) -> bool {
        self.loads().len() < Load::ALL.len()
            || self.proxies().len() < Proxy::ALL.len()
            || !self.lbgw_also.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_keep_the_bench_order_and_drop_repeats() {
        assert_eq!(
            loads("sse,h1-keepalive, sse").unwrap(),
            Loads(vec![Load::H1, Load::Sse])
        );
        assert_eq!(loads("10mb-body").unwrap(), Loads(vec![Load::Large]));
    }

    #[test]
    fn an_unknown_load_names_the_valid_keys() {
        let err = loads("h1-keepalive,h3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown load \"h3\" in --loads; the loads are: \
             h1-keepalive, h2-keepalive, new-tls-conn, sse, 10mb-body"
        );
        assert!(matches!(loads(" , "), Err(OptionError::Empty { .. })));
    }

    #[test]
    fn proxies_are_a_subset_of_the_three() {
        assert_eq!(
            proxies("haproxy,lbgw").unwrap(),
            Proxies(vec![Proxy::Lbgw, Proxy::Haproxy])
        );
        let err = proxies("envoy").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown proxy \"envoy\" in --proxies; the proxies are: lbgw, nginx, haproxy"
        );
    }

    #[test]
    fn lbgw_also_is_label_equals_path() {
        assert_eq!(
            extra_lbgw("old=/tmp/lbgw=old").unwrap(),
            ExtraLbgw {
                label: "old".to_owned(),
                path: PathBuf::from("/tmp/lbgw=old"),
            }
        );
        for bad in ["/tmp/lbgw", "old=", "=/tmp/lbgw"] {
            assert!(extra_lbgw(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            extra_lbgw("a b=/x"),
            Err(OptionError::BadLabel { .. })
        ));
        assert!(matches!(
            extra_lbgw("=/x"),
            Err(OptionError::BadLabel { .. })
        ));
        assert!(matches!(
            extra_lbgw("x"),
            Err(OptionError::NotLabelPath { .. })
        ));
    }

    #[test]
    fn labels_must_not_collide() {
        let mut opts = Options {
            lbgw_also: vec![extra_lbgw("old=/a").unwrap(), extra_lbgw("new=/b").unwrap()],
            ..Options::default()
        };
        assert_eq!(opts.validate(), Ok(()));
        opts.lbgw_also.push(extra_lbgw("old=/c").unwrap());
        assert_eq!(
            opts.validate(),
            Err(OptionError::LabelTaken {
                label: "old".to_owned()
            })
        );
        opts.lbgw_also = vec![extra_lbgw("nginx=/a").unwrap()];
        assert!(opts.validate().is_err());
    }

    #[test]
    fn only_a_full_run_is_published() {
        let mut opts = Options::default();
        assert!(!opts.partial());
        opts.loads = Some(loads("sse").unwrap());
        assert!(opts.partial());
        opts.loads = Some(loads(&keys(&Load::ALL, |l| l.key())).unwrap());
        assert!(!opts.partial());
        opts.proxies = Some(proxies("lbgw").unwrap());
        assert!(opts.partial());
        opts.proxies = None;
        opts.lbgw_also = vec![extra_lbgw("old=/a").unwrap()];
        assert!(opts.partial());
    }
}
