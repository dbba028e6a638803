//! Ed25519 signatures over model manifests: integrity beyond SHA-256.
//!
//! A manifest already carries the SHA-256 of the model file and of the
//! reference profile, so one signature over the manifest's bytes vouches for
//! all three files. The signature lives next to the manifest, in
//! [`SIGNATURE_FILE`]:
//!
//! ```toml
//! # driftline model signature
//! algorithm = "ed25519"
//! key_id = "3f1c0a9b7d2e4c55"          # fingerprint of the signing key (below)
//! manifest_sha256 = "…"                # for people: which manifest bytes were signed
//! signature = "base64 of 64 bytes"
//! ```
//!
//! What is signed is [`SIGNING_CONTEXT`] followed by the exact bytes of
//! `model.toml`; the prefix keeps a driftline signature from being valid for
//! any other protocol that uses the same key, and the manifest is verified
//! and then parsed from the same buffer, so nothing can change in between.
//!
//! Keys are text files of one line, `ed25519-secret <base64 of the 32-byte
//! seed>` or `ed25519-public <base64 of the 32-byte key>`, with `#` comment
//! lines; `model.trusted_keys` also takes a public key inline (bare base64
//! or with its `ed25519-public` tag). A key's id is the first 16 hex digits
//! of the SHA-256 of its public bytes.
//!
//! Guarantees: verification uses `verify_strict` (no malleable or
//! small-order signatures); every failure is a [`SignatureError`] that names
//! the file it is about and says which of unsigned, unknown key, bad
//! signature or unreadable key it is; secret key files are created with mode
//! 0600 and never overwritten; signing keys are wiped from memory on drop.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::model::sha256_hex;

/// The signature file of a model directory, next to `model.toml`.
pub const SIGNATURE_FILE: &str = "model.toml.sig";

/// Prefix of every signed message (domain separation).
pub const SIGNING_CONTEXT: &[u8] = b"driftline model manifest v1\n";

const SECRET_TAG: &str = "ed25519-secret";
const PUBLIC_TAG: &str = "ed25519-public";
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a signature could not be made or was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Keys are configured and the version has no signature file.
    #[error("{path}: unsigned: no signature file, and model.trusted_keys requires one")]
    Unsigned { path: PathBuf },
    /// The signature file is malformed, or its signature does not verify
    /// with the key it names (the manifest changed after signing, or the
    /// signature was forged).
    #[error("{path}: bad signature: {detail}")]
    BadSignature { path: PathBuf, detail: String },
    /// Signed by a key that is not among the trusted keys.
    #[error("{path}: signed by key {key_id}, which is not among model.trusted_keys")]
    UnknownKey { path: PathBuf, key_id: String },
    /// A key file (or inline key) that cannot be read or is not a key of the expected kind.
    #[error("{path}: unreadable key: {detail}")]
    KeyFile { path: PathBuf, detail: String },
    /// Writing a key or signature file failed.
    #[error("{path}: cannot write: {detail}")]
    Write { path: PathBuf, detail: String },
}

impl SignatureError {
    /// Stable reason code, for metrics labels and API answers.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Unsigned { .. } => "unsigned",
            SignatureError::BadSignature { .. } => "bad_signature",
            SignatureError::UnknownKey { .. } => "unknown_key",
            SignatureError::KeyFile { .. } => "unreadable_key",
            SignatureError::Write { .. } => "write_failed",
        }
    }
}

/// The fingerprint of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    let mut id = sha256_hex(key.as_bytes());
    id.truncate(16);
    id
}

/// The signature file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureDoc {
    algorithm: String,
    key_id: String,
    manifest_sha256: String,
    signature: String,
}

/// The public keys a deployment accepts signatures from.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustedKeys {
    /// Reads `model.trusted_keys`: each entry is a public key file or an
    /// inline public key (base64, optionally tagged `ed25519-public`).
    pub fn load(entries: &[String]) -> Result<Self, SignatureError> {
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = match inline_public_key(entry) {
                Some(key) => key,
                None => read_public_key(Path::new(entry))?,
            };
            let id = key_id(&key);
            if !keys.iter().any(|(k, _)| *k == id) {
                keys.push((id, key));
            }
        }
        Ok(TrustedKeys { keys })
    }

    /// Trusts exactly these keys (tests, and keys already in memory).
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        TrustedKeys {
            keys: keys.into_iter().map(|k| (key_id(&k), k)).collect(),
        }
    }

    /// No keys: signatures are not required.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Ids of the trusted keys, in configuration order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    fn get(&self, id: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key)
    }

    /// Checks `dir`'s signature over `manifest` (the bytes of its
    /// `model.toml`, as read once by the caller) and returns the id of the
    /// key that signed it.
    pub fn verify(&self, dir: &Path, manifest: &[u8]) -> Result<String, SignatureError> {
        let path = dir.join(SIGNATURE_FILE);
        let bad = |detail: String| SignatureError::BadSignature {
            path: path.clone(),
            detail,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SignatureError::Unsigned { path: path.clone() });
            }
            Err(e) => return Err(bad(format!("cannot read: {e}"))),
        };
        let doc: SignatureDoc = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if doc.algorithm != "ed25519" {
            return Err(bad(format!(
                "algorithm {:?}, expected \"ed25519\"",
                doc.algorithm
            )));
        }
        let Some(key) = self.get(&doc.key_id) else {
            return Err(SignatureError::UnknownKey {
                path: path.clone(),
                key_id: doc.key_id,
            });
        };
        let bytes = BASE64
            .decode(doc.signature.trim())
            .map_err(|e| bad(format!("signature is not base64: {e}")))?;
        let signature = Signature::from_slice(&bytes)
            .map_err(|_| bad(format!("signature is {} bytes, expected 64", bytes.len())))?;
        key.verify_strict(&signed_message(manifest), &signature)
            .map_err(|_| {
                bad(format!(
                    "does not verify with key {} (model.toml changed after signing, or the signature is forged)",
                    doc.key_id
                ))
            })?;
        Ok(doc.key_id)
    }
}

/// `SIGNING_CONTEXT || manifest`.
fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + manifest.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(manifest);
    message
}

/// Signs `manifest` (the bytes of `dir/model.toml`) and writes
/// `dir/model.toml.sig`, replacing an older signature atomically.
pub fn sign_manifest(
    dir: &Path,
    manifest: &[u8],
    key: &SigningKey,
) -> Result<PathBuf, SignatureError> {
    let signature = key.sign(&signed_message(manifest));
    let doc = SignatureDoc {
        algorithm: "ed25519".into(),
        key_id: key_id(&key.verifying_key()),
        manifest_sha256: sha256_hex(manifest),
        signature: BASE64.encode(signature.to_bytes()),
    };
    let body = toml::to_string(&doc).map_err(|e| SignatureError::Write {
        path: dir.join(SIGNATURE_FILE),
        detail: e.to_string(),
    })?;
    let text = format!(
        "# driftline model signature: Ed25519 over \"driftline model manifest v1\\n\" + the bytes of model.toml\n{body}"
    );
    let path = dir.join(SIGNATURE_FILE);
    let tmp = dir.join(format!(".{SIGNATURE_FILE}.tmp"));
    let write_err = |e: std::io::Error| SignatureError::Write {
        path: path.clone(),
        detail: e.to_string(),
    };
    std::fs::write(&tmp, text).map_err(write_err)?;
    std::fs::rename(&tmp, &path).map_err(write_err)?;
    Ok(path)
}

/// Creates a new key pair: the secret key at `out` (mode 0600) and the
/// public key at `out` + `.pub`. Neither file may exist yet.
pub fn generate_key(out: &Path) -> Result<(PathBuf, String), SignatureError> {
    use rand::TryRngCore as _;
    let public_path = public_key_path(out);
    for path in [out, public_path.as_path()] {
        if path.exists() {
            return Err(SignatureError::Write {
                path: path.to_owned(),
                detail: "already exists; keys are never overwritten".into(),
            });
        }
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed[..])
        .map_err(|e| SignatureError::Write {
            path: out.to_owned(),
            detail: format!("the operating system's random source failed: {e}"),
        })?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key();
    let id = key_id(&public);
    let secret_text = zeroize::Zeroizing::new(format!(
        "# driftline model signing key {id}: keep it secret\n{SECRET_TAG} {}\n",
        BASE64.encode(&seed[..])
    ));
    write_new(out, secret_text.as_bytes(), true)?;
    let public_text = format!(
        "# driftline model verification key {id}: list it in model.trusted_keys\n{PUBLIC_TAG} {}\n",
        BASE64.encode(public.as_bytes())
    );
    write_new(&public_path, public_text.as_bytes(), false)?;
    Ok((public_path, id))
}

/// `KEY` → `KEY.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), SignatureError> {
    let err = |e: std::io::Error| SignatureError::Write {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        if secret {
            options.mode(0o600);
        }
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

/// Reads a secret key file written by [`generate_key`].
pub fn read_signing_key(path: &Path) -> Result<SigningKey, SignatureError> {
    let text = zeroize::Zeroizing::new(read_key_text(path)?);
    let bytes = zeroize::Zeroizing::new(decode_tagged(&text, SECRET_TAG, path)?);
    let seed: &[u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| key_err(path, format!("{} bytes, expected 32", bytes.len())))?;
    Ok(SigningKey::from_bytes(seed))
}

/// Reads a public key file written by [`generate_key`].
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, SignatureError> {
    let text = read_key_text(path)?;
    let bytes = decode_tagged(&text, PUBLIC_TAG, path)?;
    public_from_bytes(&bytes).map_err(|detail| key_err(path, detail))
}

/// An inline public key from the config: bare base64 of 32 bytes, or the
/// tagged line of a `.pub` file. `None` when `entry` is not one (a path).
fn inline_public_key(entry: &str) -> Option<VerifyingKey> {
    let entry = entry.trim();
    let body = entry
        .strip_prefix(PUBLIC_TAG)
        .map(str::trim)
        .unwrap_or(entry);
    let bytes = BASE64.decode(body).ok()?;
    public_from_bytes(&bytes).ok()
}

fn public_from_bytes(bytes: &[u8]) -> Result<VerifyingKey, String> {
    let array: &[u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{} bytes, expected 32", bytes.len()))?;
    VerifyingKey::from_bytes(array).map_err(|_| "not a valid Ed25519 public key".to_owned())
}

fn key_err(path: &Path, detail: String) -> SignatureError {
    SignatureError::KeyFile {
        path: path.to_owned(),
        detail,
    }
}

fn read_key_text(path: &Path) -> Result<String, SignatureError> {
    std::fs::read_to_string(path).map_err(|e| key_err(path, e.to_string()))
}

/// The base64 payload of the one `tag <base64>` line of a key file.
fn decode_tagged(text: &str, tag: &str, path: &Path) -> Result<Vec<u8>, SignatureError> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return Err(key_err(path, format!("expected one `{tag} <base64>` line")));
    };
    let Some((found, body)) = line.split_once(char::is_whitespace) else {
        return Err(key_err(
            path,
            format!("expected `{tag} <base64>`, found no tag"),
        ));
    };
    if found != tag {
        let hint = if found == SECRET_TAG {
            " (this is a secret key: give its .pub file)"
        } else if found == PUBLIC_TAG {
            " (this is a public key: signing needs the secret key file)"
        } else {
            ""
        };
        return Err(key_err(
            path,
            format!("is a `{found}` key, expected `{tag}`{hint}"),
        ));
    }
    BASE64
        .decode(body.trim())
        .map_err(|e| key_err(path, format!("not base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(dir: &Path, name: &str) -> (SigningKey, VerifyingKey) {
        let path = dir.join(name);
        generate_key(&path).unwrap();
        let secret = read_signing_key(&path).unwrap();
        let public = read_public_key(&public_key_path(&path)).unwrap();
        (secret, public)
    }

    #[test]
    fn keygen_writes_a_matching_pair_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops");
        let (public_path, id) = generate_key(&path).unwrap();
        let secret = read_signing_key(&path).unwrap();
        let public = read_public_key(&public_path).unwrap();
        assert_eq!(secret.verifying_key(), public);
        assert_eq!(id, key_id(&public));
        assert_eq!(id.len(), 16);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = generate_key(&path).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
    }

    #[test]
    fn a_signed_manifest_verifies_and_any_change_is_a_bad_signature() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = keypair(dir.path(), "k");
        let manifest = b"name = \"m\"\nversion = \"2\"\n";
        sign_manifest(dir.path(), manifest, &secret).unwrap();
        let trusted = TrustedKeys::from_keys([public]);
        assert_eq!(
            trusted.verify(dir.path(), manifest).unwrap(),
            key_id(&public)
        );
        let tampered = b"name = \"m\"\nversion = \"3\"\n";
        let err = trusted.verify(dir.path(), tampered).unwrap_err();
        assert_eq!(err.code(), "bad_signature", "{err}");
        assert!(err.to_string().contains(SIGNATURE_FILE), "{err}");
    }

    #[test]
    fn unsigned_unknown_key_and_forged_signature_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, _) = keypair(dir.path(), "a");
        let (_, other_public) = keypair(dir.path(), "b");
        let manifest = b"format = 1\n";
        let only_b = TrustedKeys::from_keys([other_public]);
        let err = only_b.verify(dir.path(), manifest).unwrap_err();
        assert_eq!(err.code(), "unsigned", "{err}");

        sign_manifest(dir.path(), manifest, &secret).unwrap();
        let err = only_b.verify(dir.path(), manifest).unwrap_err();
        assert_eq!(err.code(), "unknown_key", "{err}");

        // A signature by key a that claims to be by trusted key b.
        let sig_path = dir.path().join(SIGNATURE_FILE);
        let text = std::fs::read_to_string(&sig_path).unwrap();
        let forged = text.replace(&key_id(&secret.verifying_key()), &key_id(&other_public));
        std::fs::write(&sig_path, forged).unwrap();
        let err = only_b.verify(dir.path(), manifest).unwrap_err();
        assert_eq!(err.code(), "bad_signature", "{err}");

        std::fs::write(&sig_path, "algorithm = \"ed25519\"\n").unwrap();
        let err = only_b.verify(dir.path(), manifest).unwrap_err();
        assert_eq!(err.code(), "bad_signature", "{err}");
    }

    #[test]
    fn trusted_keys_come_from_files_or_inline_base64_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = keypair(dir.path(), "k");
        let pub_path = public_key_path(&dir.path().join("k"));
        let inline = BASE64.encode(public.as_bytes());
        let tagged = format!("{PUBLIC_TAG} {inline}");
        for entry in [pub_path.display().to_string(), inline, tagged] {
            let keys = TrustedKeys::load(std::slice::from_ref(&entry)).unwrap();
            assert_eq!(keys.ids().collect::<Vec<_>>(), vec![key_id(&public)]);
        }
        let missing = dir.path().join("nope.pub").display().to_string();
        let err = TrustedKeys::load(std::slice::from_ref(&missing)).unwrap_err();
        assert_eq!(err.code(), "unreadable_key");
        assert!(err.to_string().contains(&missing), "{err}");
        // The secret key file where a public key belongs.
        let secret = dir.path().join("k").display().to_string();
        let err = TrustedKeys::load(&[secret]).unwrap_err();
        assert!(err.to_string().contains("give its .pub file"), "{err}");
        let junk = dir.path().join("junk.pub");
        std::fs::write(&junk, "ed25519-public !!!\n").unwrap();
        let err = TrustedKeys::load(&[junk.display().to_string()]).unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
        assert!(TrustedKeys::load(&[]).unwrap().is_empty());
    }
}
