//! The model registry: a model's versions on disk, their validation, and a
//! watcher that notices new ones.
//!
//! A model name maps to a directory of versions, `models/<name>/<version>/`
//! (the parent of `model.dir`). [`Registry::validate`] runs every check a
//! version must pass before it may take traffic, in this order, stopping at
//! the first failure:
//!
//! 1. the manifest is read once (the bytes that are verified are the bytes
//!    that are parsed);
//! 2. with `model.trusted_keys` set, its Ed25519 signature
//!    ([`crate::score::signature`]), and a reference profile must then be
//!    covered by `reference_sha256`;
//! 3. the manifest parses and validates, and names this model and this version;
//! 4. the input contract: every store and aggregate input is one the running
//!    service serves (a store column of that name and kind; an aggregate of
//!    that name with the same field, function and window);
//! 5. the reference profile: its SHA-256 against the manifest, its columns
//!    against the inputs, and the drift plan built from it;
//! 6. the model file: its SHA-256, tract's load, and a dry run ([`Model::load`]'s checks).
//!
//! Guarantees: validation only reads files and builds values; it never
//! touches serving state, so it runs on any thread (it is far too slow for
//! the scoring thread: a graph load takes milliseconds). A version that
//! fails is a typed [`Refusal`] with a stable [`Refusal::code`] for logs,
//! `/v1/models` and a metric label, and a message naming the file or input.
//!
//! # Watching
//!
//! [`Watcher`] polls the directory (one `read_dir` and a `stat` per file of
//! each version per interval) instead of using inotify through the `notify`
//! crate: polling works the same on every file system a model store is
//! mounted from (NFS, overlay, Kubernetes volumes, where change events are
//! missing or late), costs nothing measurable at a 10 s interval, and adds
//! no dependency. A version is reported once its files have not changed
//! between two polls, so a copy in progress is never validated half-written.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::drift::monitor::{DriftConfig, Plan};
use crate::drift::profile::{Profile, ProfileError};
use crate::features::aggregates::{AggregateSpec, Aggregator};
use crate::features::store::{Column, ColumnKind, FeatureStore};
use crate::score::manifest::{InputKind, InputSource, Manifest, ManifestError};
use crate::score::model::{sha256_hex, Model, ModelError};
use crate::score::signature::{SignatureError, TrustedKeys};

/// The manifest's file name in a version directory.
pub const MANIFEST_FILE: &str = "model.toml";

/// Errors listing versions (not about any one version).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: cannot list model versions: {source}")]
    Scan {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{version:?} is not a version name (one path component of letters, digits, `.`, `_` or `-`)")]
    InvalidVersion { version: String },
}

/// Why a version may not take traffic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{dir}: no such model version (no {MANIFEST_FILE})")]
    NotFound { dir: PathBuf },
    #[error("{path}: cannot read: {detail}")]
    Unreadable { path: PathBuf, detail: String },
    #[error("{detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Identity { path: PathBuf, detail: String },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("{path}: names reference `{reference}` without `reference_sha256`, so the signature does not cover it")]
    ReferenceUnsigned { path: PathBuf, reference: String },
    #[error("{path}: input `{input}`: {detail}")]
    InputContract {
        path: PathBuf,
        input: String,
        detail: String,
    },
    #[error("{path}: reference profile sha256 mismatch: the manifest says {expected}, the file is {actual}")]
    ReferenceChecksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{detail}")]
    Reference { path: PathBuf, detail: String },
    #[error("{path}: sha256 mismatch: the manifest says {expected}, the file is {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{detail}")]
    Graph { path: PathBuf, detail: String },
}

impl Refusal {
    /// Stable reason code: a metric label value and the `reason` of a
    /// `refused` model event.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound { .. } => "not_found",
            Refusal::Unreadable { .. } => "unreadable",
            Refusal::Manifest { .. } => "manifest",
            Refusal::Identity { .. } => "identity",
            Refusal::Signature(e) => e.code(),
            Refusal::ReferenceUnsigned { .. } => "reference_unsigned",
            Refusal::InputContract { .. } => "input_contract",
            Refusal::ReferenceChecksum { .. } => "reference_checksum",
            Refusal::Reference { .. } => "reference",
            Refusal::Checksum { .. } => "checksum",
            Refusal::Graph { .. } => "graph",
        }
    }

    /// Every code, for registering a metric's label values at zero.
    pub const CODES: &[&str] = &[
        "not_found",
        "unreadable",
        "manifest",
        "identity",
        "unsigned",
        "bad_signature",
        "unknown_key",
        "unreadable_key",
        "reference_unsigned",
        "input_contract",
        "reference_checksum",
        "reference",
        "checksum",
        "graph",
    ];
}

/// What the running service can feed a model: its store columns and the
/// aggregates its aggregator computes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServingContract {
    pub store: Vec<Column>,
    pub aggregates: Vec<AggregateSpec>,
}

impl ServingContract {
    /// The contract of running sources.
    pub fn of_sources(store: Option<&FeatureStore>, aggregator: Option<&Aggregator>) -> Self {
        ServingContract {
            store: store.map_or_else(Vec::new, |s| s.schema().columns().to_vec()),
            aggregates: aggregator.map_or_else(Vec::new, |a| a.specs().to_vec()),
        }
    }

    /// The contract the sources built for `manifest` would have (as
    /// `app::sources` builds them: one store column per store input, one
    /// aggregate per aggregate input).
    pub fn of_manifest(manifest: &Manifest) -> Self {
        let store = manifest
            .inputs
            .iter()
            .filter(|i| i.source == InputSource::Store)
            .map(|i| Column {
                name: i.name.as_str().into(),
                kind: column_kind(i.kind),
            })
            .collect();
        ServingContract {
            store,
            aggregates: manifest.aggregate_specs(),
        }
    }

    /// The first input of `manifest` this contract cannot serve: `(input, why)`.
    pub fn gap(&self, manifest: &Manifest) -> Option<(String, String)> {
        let declared = manifest.aggregate_specs();
        for input in &manifest.inputs {
            let why = match input.source {
                InputSource::Event => None,
                InputSource::Store => {
                    let want = column_kind(input.kind);
                    match self.store.iter().find(|c| c.name == input.name) {
                        None => Some(format!(
                            "reads store column `{}`, which the running store does not have (it has: {})",
                            input.name,
                            list(self.store.iter().map(|c| c.name.as_str()))
                        )),
                        Some(c) if c.kind != want => Some(format!(
                            "reads store column `{}` as {}, the running store holds it as {}",
                            input.name,
                            kind_name(want),
                            kind_name(c.kind)
                        )),
                        Some(_) => None,
                    }
                }
                InputSource::Aggregate => {
                    let Some(spec) = declared.iter().find(|s| s.name == input.name) else {
                        continue; // the manifest's own validation reports a bad declaration
                    };
                    match self.aggregates.iter().find(|s| s.name == spec.name) {
                        None => Some(format!(
                            "aggregate {}, which the running service does not compute (it computes: {})",
                            describe(spec),
                            list(self.aggregates.iter().map(|s| s.name.as_str()))
                        )),
                        Some(running) if running != spec => Some(format!(
                            "declares {}, the running service computes {}",
                            describe(spec),
                            describe(running)
                        )),
                        Some(_) => None,
                    }
                }
            };
            if let Some(why) = why {
                return Some((input.name.clone(), why));
            }
        }
        None
    }
}

fn column_kind(kind: InputKind) -> ColumnKind {
    match kind {
        InputKind::Categorical => ColumnKind::Categorical,
        InputKind::Numeric | InputKind::Boolean => ColumnKind::Numeric,
    }
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Numeric => "numeric",
        ColumnKind::Categorical => "categorical",
    }
}

fn describe(spec: &AggregateSpec) -> String {
    format!(
        "`{}` = {} of `{}` over {}",
        spec.name,
        spec.function.as_str(),
        spec.field,
        crate::lifecycle::plan::human_duration(spec.window_ms.max(0) as u64)
    )
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

/// What validation checks a version against.
#[derive(Debug, Clone, Default)]
pub struct ValidationContext {
    /// Empty: signatures are not required.
    pub trusted_keys: TrustedKeys,
    pub serving: ServingContract,
    /// Drift settings, to build the version's drift plan; `None` (or
    /// `enabled = false`) skips the plan but still checks the profile.
    pub drift: Option<DriftConfig>,
}

/// A version that passed every check, ready to load into routing.
#[derive(Debug, Clone)]
pub struct ValidatedVersion {
    pub version: String,
    pub dir: PathBuf,
    pub model: Arc<Model>,
    /// SHA-256 of the manifest bytes that were checked.
    pub manifest_sha256: String,
    /// The key that signed it, when keys are configured.
    pub signed_by: Option<String>,
    pub reference: Option<Arc<Profile>>,
    pub drift: Option<Arc<Plan>>,
}

/// A version directory as last seen on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub version: String,
    pub dir: PathBuf,
    pub fingerprint: Fingerprint,
}

/// Names, sizes and modification times of a version directory's files:
/// what changes when a version is written or replaced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<(String, u64, Option<SystemTime>)>);

/// A model's versions on disk.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
    name: String,
}

impl Registry {
    /// The versions of model `name` under `root` (`models/<name>`).
    pub fn new(root: &Path, name: &str) -> Self {
        Registry {
            root: root.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The registry `model.dir` (`models/<name>/<version>`) belongs to.
    pub fn of_model_dir(dir: &Path, name: &str) -> Self {
        let root = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Registry::new(root, name)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory of `version`; refuses names that could leave the root
    /// (they come from the admin API).
    pub fn version_dir(&self, version: &str) -> Result<PathBuf, RegistryError> {
        let ok = !version.is_empty()
            && version != "."
            && version != ".."
            && version.len() <= 128
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(self.root.join(version))
        } else {
            Err(RegistryError::InvalidVersion {
                version: version.to_owned(),
            })
        }
    }

    /// The version directories holding a manifest, in version order.
    pub fn scan(&self) -> Result<Vec<VersionEntry>, RegistryError> {
        let scan_err = |source| RegistryError::Scan {
            path: self.root.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(scan_err)? {
            let entry = entry.map_err(scan_err)?;
            let Ok(version) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(dir) = self.version_dir(&version) else {
                continue;
            };
            if !dir.join(MANIFEST_FILE).is_file() {
                continue;
            }
            // A directory that vanishes or cannot be read between the two
            // calls is simply not listed this time.
            let Ok(fingerprint) = fingerprint(&dir) else {
                continue;
            };
            out.push(VersionEntry {
                version,
                dir,
                fingerprint,
            });
        }
        out.sort_by(|a, b| version_order(&a.version, &b.version));
        Ok(out)
    }

    /// Runs every check on `version` (see the module docs).
    pub fn validate(
        &self,
        version: &str,
        ctx: &ValidationContext,
    ) -> Result<ValidatedVersion, Refusal> {
        let dir = self.version_dir(version).map_err(|e| Refusal::Identity {
            path: self.root.clone(),
            detail: e.to_string(),
        })?;
        validate_dir(&dir, &self.name, version, ctx)
    }
}

/// Numeric versions in numeric order, before other names in text order.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

fn fingerprint(dir: &Path) -> std::io::Result<Fingerprint> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        files.push((name, meta.len(), meta.modified().ok()));
    }
    files.sort();
    Ok(Fingerprint(files))
}

/// Reads `dir`'s manifest once, verifies its signature over those bytes
/// when keys are configured, and parses the same bytes.
/// Returns the bytes, the manifest and the signing key's id.
fn read_manifest(
    dir: &Path,
    trusted: &TrustedKeys,
) -> Result<(Vec<u8>, Manifest, Option<String>), Refusal> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&manifest_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Refusal::NotFound {
                dir: dir.to_owned(),
            })
        }
        Err(e) => {
            return Err(Refusal::Unreadable {
                path: manifest_path,
                detail: e.to_string(),
            })
        }
    };
    let signed_by = if trusted.is_empty() {
        None
    } else {
        Some(trusted.verify(dir, &bytes)?)
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| Refusal::Manifest {
        path: manifest_path.clone(),
        detail: format!("{}: not UTF-8: {e}", manifest_path.display()),
    })?;
    let manifest = Manifest::parse(text, &manifest_path).map_err(|e| Refusal::Manifest {
        path: manifest_path.clone(),
        detail: e.to_string(),
    })?;
    if let (Some(reference), None, false) = (
        &manifest.reference,
        &manifest.reference_sha256,
        trusted.is_empty(),
    ) {
        return Err(Refusal::ReferenceUnsigned {
            path: manifest_path,
            reference: reference.clone(),
        });
    }
    Ok((bytes, manifest, signed_by))
}

/// What a signature vouches for, checked without loading the graph:
/// `driftline model verify` and `driftline model sign`.
#[derive(Debug, Clone)]
pub struct Integrity {
    pub manifest: Manifest,
    /// The manifest's bytes, as verified.
    pub manifest_bytes: Vec<u8>,
    pub signed_by: Option<String>,
}

/// Checks `dir`'s signature (when `trusted` has keys), manifest, and the
/// SHA-256 of its model file and of its reference profile.
pub fn check_integrity(dir: &Path, trusted: &TrustedKeys) -> Result<Integrity, Refusal> {
    let (manifest_bytes, manifest, signed_by) = read_manifest(dir, trusted)?;
    let hash_of = |file: &str| -> Result<(PathBuf, String), Refusal> {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| Refusal::Unreadable {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok((path, sha256_hex(&bytes)))
    };
    let (path, actual) = hash_of(&manifest.file)?;
    if !actual.eq_ignore_ascii_case(&manifest.sha256) {
        return Err(Refusal::Checksum {
            path,
            expected: manifest.sha256.clone(),
            actual,
        });
    }
    if let (Some(file), Some(expected)) = (&manifest.reference, &manifest.reference_sha256) {
        let (path, actual) = hash_of(file)?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Refusal::ReferenceChecksum {
                path,
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(Integrity {
        manifest,
        manifest_bytes,
        signed_by,
    })
}

/// Validates the version in `dir`, which must be version `version` of model `name`.
pub fn validate_dir(
    dir: &Path,
    name: &str,
    version: &str,
    ctx: &ValidationContext,
) -> Result<ValidatedVersion, Refusal> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let (bytes, manifest, signed_by) = read_manifest(dir, &ctx.trusted_keys)?;
    if manifest.name != name || manifest.version != version {
        return Err(Refusal::Identity {
            path: manifest_path,
            detail: format!(
                "the manifest says {}/{}, its directory is {name}/{version}",
                manifest.name, manifest.version
            ),
        });
    }
    if let Some((input, detail)) = ctx.serving.gap(&manifest) {
        return Err(Refusal::InputContract {
            path: manifest_path,
            input,
            detail,
        });
    }
    let (reference, drift) = match &manifest.reference {
        None => (None, None),
        Some(file) => {
            let path = dir.join(file);
            let (profile, plan) = load_reference(&manifest, &path, ctx.drift.as_ref())?;
            (Some(Arc::new(profile)), plan.map(Arc::new))
        }
    };
    let manifest_sha256 = sha256_hex(&bytes);
    let model = Model::from_manifest(manifest, dir).map_err(model_refusal)?;
    Ok(ValidatedVersion {
        version: version.to_owned(),
        dir: dir.to_owned(),
        model: Arc::new(model),
        manifest_sha256,
        signed_by,
        reference,
        drift,
    })
}

fn load_reference(
    manifest: &Manifest,
    path: &Path,
    drift: Option<&DriftConfig>,
) -> Result<(Profile, Option<Plan>), Refusal> {
    let reference_err = |detail: String| Refusal::Reference {
        path: path.to_owned(),
        detail,
    };
    let profile = Profile::load_verified(path, manifest.reference_sha256.as_deref()).map_err(
        |e| match e {
            ProfileError::Checksum {
                path,
                expected,
                actual,
            } => Refusal::ReferenceChecksum {
                path,
                expected,
                actual,
            },
            other => reference_err(other.to_string()),
        },
    )?;
    let watched = crate::app::watched_columns(manifest);
    profile
        .check_against(&watched, path)
        .map_err(|e| reference_err(e.to_string()))?;
    let plan = match drift.filter(|d| d.enabled) {
        None => None,
        Some(config) => Some(
            Plan::new(&watched, profile.clone(), path, config.clone())
                .map_err(|e| reference_err(format!("{}: {e}", path.display())))?,
        ),
    };
    Ok((profile, plan))
}

fn model_refusal(e: ModelError) -> Refusal {
    let detail = e.to_string();
    match e {
        ModelError::Checksum {
            path,
            expected,
            actual,
        } => Refusal::Checksum {
            path,
            expected,
            actual,
        },
        ModelError::Read { path, .. } => Refusal::Unreadable { path, detail },
        ModelError::Load { path, .. } | ModelError::Shape { path, .. } => {
            Refusal::Graph { path, detail }
        }
        ModelError::Manifest(m) => {
            let path = match &m {
                ManifestError::Read { path, .. }
                | ManifestError::Parse { path, .. }
                | ManifestError::Invalid { path, .. } => path.clone(),
            };
            Refusal::Manifest { path, detail }
        }
        ModelError::Run { .. } => Refusal::Graph {
            path: PathBuf::new(),
            detail,
        },
    }
}

/// A change in a model's versions on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum WatchEvent {
    /// A new version whose files have settled.
    Added { version: String, dir: PathBuf },
    /// A known version whose files changed (and settled): validate it again.
    Changed { version: String, dir: PathBuf },
    /// A version directory (or its manifest) disappeared.
    Removed { version: String },
}

/// Polls a registry and reports versions that appear, change or go.
#[derive(Debug)]
pub struct Watcher {
    registry: Registry,
    known: BTreeMap<String, Fingerprint>,
    settling: HashMap<String, Fingerprint>,
}

impl Watcher {
    /// A watcher that knows nothing yet: every version on disk will be
    /// reported as added once settled. Call [`Watcher::prime`] to take the
    /// versions present at start as known.
    pub fn new(registry: Registry) -> Self {
        Watcher {
            registry,
            known: BTreeMap::new(),
            settling: HashMap::new(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Takes the versions on disk now as known and returns them (start-up
    /// validates them itself).
    pub fn prime(&mut self) -> Result<Vec<VersionEntry>, RegistryError> {
        let entries = self.registry.scan()?;
        self.known = entries
            .iter()
            .map(|e| (e.version.clone(), e.fingerprint.clone()))
            .collect();
        self.settling.clear();
        Ok(entries)
    }

    /// One scan: the changes that have settled since the previous one.
    pub fn poll(&mut self) -> Result<Vec<WatchEvent>, RegistryError> {
        let entries = self.registry.scan()?;
        let mut events = Vec::new();
        let present: std::collections::HashSet<&str> =
            entries.iter().map(|e| e.version.as_str()).collect();
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|v| !present.contains(v.as_str()))
            .cloned()
            .collect();
        for version in gone {
            self.known.remove(&version);
            events.push(WatchEvent::Removed { version });
        }
        self.settling.retain(|v, _| present.contains(v.as_str()));
        for entry in entries {
            if self.known.get(&entry.version) == Some(&entry.fingerprint) {
                self.settling.remove(&entry.version);
                continue;
            }
            if self.settling.get(&entry.version) == Some(&entry.fingerprint) {
                self.settling.remove(&entry.version);
                let change = if self.known.contains_key(&entry.version) {
                    WatchEvent::Changed {
                        version: entry.version.clone(),
                        dir: entry.dir.clone(),
                    }
                } else {
                    WatchEvent::Added {
                        version: entry.version.clone(),
                        dir: entry.dir.clone(),
                    }
                };
                self.known.insert(entry.version, entry.fingerprint);
                events.push(change);
            } else {
                self.settling.insert(entry.version, entry.fingerprint);
            }
        }
        Ok(events)
    }

    /// Polls every `interval` until `stop` is set, handing each change to
    /// `on_event`; a failed scan is logged and retried at the next interval.
    /// Blocking: run it on its own thread.
    pub fn run(
        mut self,
        interval: Duration,
        stop: &AtomicBool,
        mut on_event: impl FnMut(WatchEvent),
    ) {
        let tick = Duration::from_millis(100).min(interval);
        while !stop.load(Ordering::Relaxed) {
            match self.poll() {
                Ok(events) => events.into_iter().for_each(&mut on_event),
                Err(e) => tracing::warn!(error = %e, "model registry scan failed"),
            }
            let mut waited = Duration::ZERO;
            while waited < interval && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited += tick;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"format = 1
name = "m"
version = "VERSION"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[score]
output = "probabilities"
index = 1
[[inputs]]
name = "amount"
kind = "numeric"
source = "event"
[[inputs]]
name = "credit_limit"
kind = "numeric"
source = "store"
[[inputs]]
name = "card_tier"
kind = "categorical"
source = "store"
encoding = "one_hot"
vocabulary = ["standard", "gold"]
[[inputs]]
name = "n1h"
kind = "numeric"
source = "aggregate"
aggregate = { field = "amount", function = "count", window = "1h" }
"#;

    fn manifest(edit: impl FnOnce(String) -> String) -> Manifest {
        Manifest::parse(&edit(MANIFEST.replace("VERSION", "1")), Path::new("m.toml")).unwrap()
    }

    fn write_version(root: &Path, version: &str, text: &str) -> PathBuf {
        let dir = root.join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), text.replace("VERSION", version)).unwrap();
        dir
    }

    #[test]
    fn the_contract_of_a_manifest_serves_that_manifest() {
        let m = manifest(|s| s);
        let contract = ServingContract::of_manifest(&m);
        assert_eq!(contract.store.len(), 2);
        assert_eq!(contract.aggregates.len(), 1);
        assert_eq!(contract.gap(&m), None);
    }

    #[test]
    fn a_store_column_the_store_lacks_is_named() {
        let running = ServingContract::of_manifest(&manifest(|s| s));
        let wants_more = manifest(|s| {
            s + "[[inputs]]\nname = \"chargebacks_1y\"\nkind = \"numeric\"\nsource = \"store\"\n"
        });
        let (input, why) = running.gap(&wants_more).unwrap();
        assert_eq!(input, "chargebacks_1y");
        assert!(why.contains("store column `chargebacks_1y`"), "{why}");
        assert!(why.contains("credit_limit, card_tier"), "{why}");
    }

    #[test]
    fn a_store_column_of_another_kind_is_a_gap() {
        let running = ServingContract::of_manifest(&manifest(|s| s));
        let numeric_tier = manifest(|s| {
            s.replace(
                "kind = \"categorical\"\nsource = \"store\"\nencoding = \"one_hot\"\nvocabulary = [\"standard\", \"gold\"]",
                "kind = \"numeric\"\nsource = \"store\"",
            )
        });
        let (input, why) = running.gap(&numeric_tier).unwrap();
        assert_eq!(input, "card_tier");
        assert!(
            why.contains("held as categorical") || why.contains("holds it as categorical"),
            "{why}"
        );
    }

    #[test]
    fn an_aggregate_with_another_window_is_a_gap() {
        let running = ServingContract::of_manifest(&manifest(|s| s));
        let other = manifest(|s| s.replace("window = \"1h\"", "window = \"2h\""));
        let (input, why) = running.gap(&other).unwrap();
        assert_eq!(input, "n1h");
        assert!(why.contains("over 2h") && why.contains("over 1h"), "{why}");
        let renamed = manifest(|s| s.replace("name = \"n1h\"", "name = \"n2h\""));
        let (input, why) = running.gap(&renamed).unwrap();
        assert_eq!(input, "n2h");
        assert!(why.contains("does not compute (it computes: n1h)"), "{why}");
    }

    #[test]
    fn version_names_cannot_leave_the_root() {
        let r = Registry::new(Path::new("/models/m"), "m");
        assert_eq!(r.version_dir("2").unwrap(), Path::new("/models/m/2"));
        assert_eq!(
            r.version_dir("2024-01-05_rc.1").unwrap(),
            Path::new("/models/m/2024-01-05_rc.1")
        );
        for bad in ["", ".", "..", "../x", "a/b", "/etc", "a b", "é"] {
            assert!(r.version_dir(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Registry::of_model_dir(Path::new("models/fraud-mlp/1"), "fraud-mlp").root(),
            Path::new("models/fraud-mlp")
        );
        assert_eq!(
            Registry::of_model_dir(Path::new("1"), "m").root(),
            Path::new(".")
        );
    }

    #[test]
    fn scan_lists_versions_with_a_manifest_in_version_order() {
        let root = tempfile::tempdir().unwrap();
        for v in ["10", "2", "b", "a"] {
            write_version(root.path(), v, MANIFEST);
        }
        std::fs::create_dir_all(root.path().join("3")).unwrap(); // no manifest
        std::fs::write(root.path().join("notes.txt"), "x").unwrap();
        let r = Registry::new(root.path(), "m");
        let versions: Vec<String> = r.scan().unwrap().into_iter().map(|e| e.version).collect();
        assert_eq!(versions, ["2", "10", "a", "b"]);
        let missing = Registry::new(&root.path().join("nope"), "m");
        assert!(missing.scan().unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn the_watcher_reports_a_version_once_its_files_settle() {
        let root = tempfile::tempdir().unwrap();
        write_version(root.path(), "1", MANIFEST);
        let mut w = Watcher::new(Registry::new(root.path(), "m"));
        assert_eq!(w.prime().unwrap().len(), 1);
        assert!(w.poll().unwrap().is_empty());

        let dir = write_version(root.path(), "2", MANIFEST);
        assert!(w.poll().unwrap().is_empty(), "not settled yet");
        // Still being written: the fingerprint moves, so it waits again.
        std::fs::write(dir.join("model.onnx"), b"partial").unwrap();
        assert!(w.poll().unwrap().is_empty());
        let events = w.poll().unwrap();
        assert_eq!(
            events,
            [WatchEvent::Added {
                version: "2".into(),
                dir: dir.clone()
            }]
        );
        assert!(w.poll().unwrap().is_empty(), "reported once");

        std::fs::write(dir.join("model.onnx"), b"replaced, longer").unwrap();
        assert!(w.poll().unwrap().is_empty());
        assert_eq!(
            w.poll().unwrap(),
            [WatchEvent::Changed {
                version: "2".into(),
                dir
            }]
        );

        std::fs::remove_dir_all(root.path().join("1")).unwrap();
        assert_eq!(
            w.poll().unwrap(),
            [WatchEvent::Removed {
                version: "1".into()
            }]
        );
    }

    #[test]
    fn the_watcher_loop_stops_when_told() {
        let root = tempfile::tempdir().unwrap();
        write_version(root.path(), "1", MANIFEST);
        let stop = AtomicBool::new(false);
        let mut seen = Vec::new();
        std::thread::scope(|s| {
            s.spawn(|| {
                Watcher::new(Registry::new(root.path(), "m")).run(
                    Duration::from_millis(10),
                    &stop,
                    |e| {
                        seen.push(e);
                        stop.store(true, Ordering::Relaxed);
                    },
                )
            });
        });
        assert!(matches!(seen.as_slice(), [WatchEvent::Added { version, .. }] if version == "1"));
    }

    #[test]
    fn validation_refuses_a_missing_or_misnamed_version() {
        let root = tempfile::tempdir().unwrap();
        let r = Registry::new(root.path(), "m");
        let ctx = ValidationContext::default();
        assert_eq!(r.validate("7", &ctx).unwrap_err().code(), "not_found");
        assert_eq!(r.validate("../7", &ctx).unwrap_err().code(), "identity");
        write_version(
            root.path(),
            "2",
            &MANIFEST.replace("version = \"VERSION\"", "version = \"3\""),
        );
        let err = r.validate("2", &ctx).unwrap_err();
        assert_eq!(err.code(), "identity");
        assert!(
            err.to_string()
                .contains("the manifest says m/3, its directory is m/2"),
            "{err}"
        );
        write_version(root.path(), "4", "format = 1\n");
        let err = r.validate("4", &ctx).unwrap_err();
        assert_eq!(err.code(), "manifest");
        assert!(err.to_string().contains("model.toml"), "{err}");
    }

    #[test]
    fn every_refusal_code_is_listed() {
        let dir = PathBuf::from("d");
        let detail = String::new();
        let all = [
            Refusal::NotFound { dir: dir.clone() },
            Refusal::Unreadable {
                path: dir.clone(),
                detail: detail.clone(),
            },
            Refusal::Manifest {
                path: dir.clone(),
                detail: detail.clone(),
            },
            Refusal::Identity {
                path: dir.clone(),
                detail: detail.clone(),
            },
            Refusal::Signature(SignatureError::Unsigned { path: dir.clone() }),
            Refusal::Signature(SignatureError::BadSignature {
                path: dir.clone(),
                detail: detail.clone(),
            }),
            Refusal::Signature(SignatureError::UnknownKey {
                path: dir.clone(),
                key_id: detail.clone(),
            }),
            Refusal::Signature(SignatureError::KeyFile {
                path: dir.clone(),
                detail: detail.clone(),
            }),
            Refusal::ReferenceUnsigned {
                path: dir.clone(),
                reference: detail.clone(),
            },
            Refusal::InputContract {
                path: dir.clone(),
                input: detail.clone(),
                detail: detail.clone(),
            },
            Refusal::ReferenceChecksum {
                path: dir.clone(),
                expected: detail.clone(),
                actual: detail.clone(),
            },
            Refusal::Reference {
                path: dir.clone(),
                detail: detail.clone(),
            },
            Refusal::Checksum {
                path: dir.clone(),
                expected: detail.clone(),
                actual: detail.clone(),
            },
            Refusal::Graph { path: dir, detail },
        ];
        let codes: Vec<&str> = all.iter().map(Refusal::code).collect();
        assert_eq!(codes, Refusal::CODES);
    }
}
