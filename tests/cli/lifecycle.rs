//! Model versions on disk: the registry validating the bundled fraud-mlp
//! versions, signed versions and every way a signed one can be tampered
//! with, the input contract, the reference profile's hash, and the
//! `driftline model keygen | sign | verify` commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use driftline::drift::monitor::DriftConfig;
use driftline::lifecycle::registry::{Registry, ServingContract, ValidationContext};
use driftline::score::signature::{self, TrustedKeys};
use driftline::score::Manifest;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// What the service built from version 1 serves.
fn serving() -> ServingContract {
    let manifest = Manifest::load(&repo("models/fraud-mlp/1/model.toml")).unwrap();
    ServingContract::of_manifest(&manifest)
}

fn context(trusted: TrustedKeys) -> ValidationContext {
    ValidationContext {
        trusted_keys: trusted,
        serving: serving(),
        drift: Some(DriftConfig::default()),
    }
}

/// `<tmp>/fraud-mlp/<version>`: a copy of committed versions a test may damage.
fn copy_versions(versions: &[&str]) -> (tempfile::TempDir, Registry) {
    let tmp = tempfile::tempdir().unwrap();
    for v in versions {
        let dir = tmp.path().join("fraud-mlp").join(v);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["model.toml", "model.onnx", "reference.json"] {
            std::fs::copy(repo(&format!("models/fraud-mlp/{v}/{f}")), dir.join(f)).unwrap();
        }
    }
    let registry = Registry::new(&tmp.path().join("fraud-mlp"), "fraud-mlp");
    (tmp, registry)
}

/// A key pair in `dir`: (secret key path, trusted keys holding its public key).
fn keys(dir: &Path, name: &str) -> (PathBuf, TrustedKeys) {
    let path = dir.join(name);
    signature::generate_key(&path).unwrap();
    let public = signature::public_key_path(&path).display().to_string();
    (path, TrustedKeys::load(&[public]).unwrap())
}

fn sign(dir: &Path, key: &Path) {
    let bytes = std::fs::read(dir.join("model.toml")).unwrap();
    signature::sign_manifest(dir, &bytes, &signature::read_signing_key(key).unwrap()).unwrap();
}

#[test]
fn every_bundled_version_of_the_mlp_validates_against_the_running_contract() {
    let registry = Registry::of_model_dir(&repo("models/fraud-mlp/1"), "fraud-mlp");
    let versions: Vec<String> = registry
        .scan()
        .unwrap()
        .into_iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, ["1", "2", "3", "4"]);
    let ctx = context(TrustedKeys::default());
    for v in &versions {
        let ok = registry
            .validate(v, &ctx)
            .unwrap_or_else(|e| panic!("version {v}: {e}"));
        assert_eq!(ok.model.version(), v);
        assert!(ok.reference.is_some() && ok.drift.is_some(), "version {v}");
        assert_eq!(ok.signed_by, None);
        assert_eq!(ok.manifest_sha256.len(), 64);
    }
    // The lifecycle versions vouch for their reference profiles.
    for v in ["2", "3", "4"] {
        let m = Manifest::load(&repo(&format!("models/fraud-mlp/{v}/model.toml"))).unwrap();
        assert!(m.reference_sha256.is_some(), "version {v}");
        assert!(
            m.description.contains("DELIBERATELY") == (v != "2"),
            "version {v}: {}",
            m.description
        );
    }
}

#[test]
fn a_signed_version_passes_and_each_tampering_is_refused_with_its_reason() {
    let (tmp, registry) = copy_versions(&["2"]);
    let dir = registry.root().join("2");
    let (key, trusted) = keys(tmp.path(), "ops");
    sign(&dir, &key);
    let ok = registry.validate("2", &context(trusted.clone())).unwrap();
    assert_eq!(ok.signed_by.as_deref(), trusted.ids().next());

    let refused = |what: &str| {
        let err = registry
            .validate("2", &context(trusted.clone()))
            .unwrap_err();
        eprintln!("{what}: {} ({err})", err.code());
        err
    };
    let backup = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let restore = |f: &str, bytes: &[u8]| std::fs::write(dir.join(f), bytes).unwrap();

    // The manifest changed after signing.
    let manifest = backup("model.toml");
    let text = String::from_utf8(manifest.clone()).unwrap();
    restore(
        "model.toml",
        text.replace("retrained", "re-trained").as_bytes(),
    );
    let err = refused("tampered manifest");
    assert_eq!(err.code(), "bad_signature");
    assert!(err.to_string().contains("model.toml.sig"), "{err}");
    restore("model.toml", &manifest);

    // The model file changed: the signature holds, its hash does not.
    let onnx = backup("model.onnx");
    let mut damaged = onnx.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    restore("model.onnx", &damaged);
    let err = refused("tampered model.onnx");
    assert_eq!(err.code(), "checksum");
    assert!(err.to_string().contains("model.onnx"), "{err}");
    restore("model.onnx", &onnx);

    // The reference profile changed.
    let reference = backup("reference.json");
    let mut edited = reference.clone();
    edited.extend_from_slice(b"\n");
    restore("reference.json", &edited);
    let err = refused("tampered reference");
    assert_eq!(err.code(), "reference_checksum");
    assert!(err.to_string().contains("reference.json"), "{err}");
    restore("reference.json", &reference);

    // Signed by a key that is not trusted.
    let (_, other) = keys(tmp.path(), "other");
    let err = registry.validate("2", &context(other)).unwrap_err();
    assert_eq!(err.code(), "unknown_key", "{err}");

    // Unsigned.
    std::fs::remove_file(dir.join("model.toml.sig")).unwrap();
    let err = refused("unsigned");
    assert_eq!(err.code(), "unsigned");
    // Without keys configured, the same version is fine.
    registry
        .validate("2", &context(TrustedKeys::default()))
        .unwrap();
}

#[test]
fn a_signed_manifest_without_a_reference_hash_does_not_cover_its_reference() {
    let (tmp, registry) = copy_versions(&["1"]);
    // A manifest from before `reference_sha256` existed.
    let manifest = registry.root().join("1/model.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("reference_sha256"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text, "version 1 carries its reference's hash");
    std::fs::write(&manifest, without).unwrap();
    let (key, trusted) = keys(tmp.path(), "ops");
    sign(&registry.root().join("1"), &key);
    let err = registry.validate("1", &context(trusted)).unwrap_err();
    assert_eq!(err.code(), "reference_unsigned");
    assert!(err.to_string().contains("reference.json"), "{err}");
}

#[test]
fn a_version_reading_a_store_column_the_store_lacks_is_refused_naming_it() {
    let (_tmp, registry) = copy_versions(&["2"]);
    let mut contract = serving();
    contract.store.retain(|c| c.name != "chargebacks_1y");
    let ctx = ValidationContext {
        serving: contract,
        ..context(TrustedKeys::default())
    };
    let err = registry.validate("2", &ctx).unwrap_err();
    assert_eq!(err.code(), "input_contract");
    let msg = err.to_string();
    assert!(
        msg.contains("input `chargebacks_1y`") && msg.contains("model.toml"),
        "{msg}"
    );
}

#[test]
fn a_wrong_reference_hash_is_an_error_naming_the_file_at_service_start_too() {
    let (tmp, registry) = copy_versions(&["2"]);
    let dir = registry.root().join("2");
    let reference = dir.join("reference.json");
    let mut bytes = std::fs::read(&reference).unwrap();
    bytes.extend_from_slice(b" ");
    std::fs::write(&reference, bytes).unwrap();
    let config = tmp.path().join("driftline.toml");
    std::fs::write(
        &config,
        format!("[model]\ndir = {:?}\n", dir.display().to_string()),
    )
    .unwrap();
    // `driftline validate` runs the same checks as `serve`'s start-up.
    let problems = driftline::app::check(&config, &[]);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("sha256 mismatch") && p.contains(&reference.display().to_string())),
        "{problems:#?}"
    );
}

fn driftline(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_model_commands_make_keys_sign_and_verify() {
    let (tmp, registry) = copy_versions(&["2"]);
    let dir = registry.root().join("2");
    let dir_arg = dir.display().to_string();
    let key = tmp.path().join("ops").display().to_string();
    let public = format!("{key}.pub");

    let (ok, out) = driftline(&["model", "keygen", "--out", &key]);
    assert!(ok, "{out}");
    assert!(out.contains(&public), "{out}");
    let (ok, out) = driftline(&["model", "keygen", "--out", &key]);
    assert!(!ok && out.contains("already exists"), "{out}");

    let (ok, out) = driftline(&["model", "verify", "--trusted-key", &public, &dir_arg]);
    assert!(!ok && out.contains("(unsigned)"), "{out}");

    let (ok, out) = driftline(&["model", "sign", "--key", &key, &dir_arg]);
    assert!(ok, "{out}");
    assert!(out.contains("signed fraud-mlp/2"), "{out}");
    let (ok, out) = driftline(&["model", "verify", "--trusted-key", &public, &dir_arg]);
    assert!(ok, "{out}");
    assert!(out.contains("ok: fraud-mlp/2 signed by"), "{out}");

    // A public key where the secret one belongs, and the other way round.
    let (ok, out) = driftline(&["model", "sign", "--key", &public, &dir_arg]);
    assert!(
        !ok && out.contains("signing needs the secret key file"),
        "{out}"
    );
    let (ok, out) = driftline(&["model", "verify", "--trusted-key", &key, &dir_arg]);
    assert!(!ok && out.contains("give its .pub file"), "{out}");

    // Signing refuses a manifest whose hash does not match its model file.
    std::fs::write(dir.join("model.onnx"), b"not the model").unwrap();
    let (ok, out) = driftline(&["model", "sign", "--key", &key, &dir_arg]);
    assert!(!ok && out.contains("not signed (checksum)"), "{out}");
    let (ok, out) = driftline(&["model", "verify", "--trusted-key", &public, &dir_arg]);
    assert!(!ok && out.contains("refused (checksum)"), "{out}");
}
