//! `driftline model ...`: the lifecycle helpers of the command line.
//!
//! - `keygen --out KEY`: a new Ed25519 key pair, `KEY` (secret, mode 0600)
//!   and `KEY.pub`; never overwrites.
//! - `sign --key KEY DIR`: checks that `DIR/model.toml`'s hashes match its
//!   model file and reference profile (and that the reference has a hash at
//!   all, or the signature would not cover it), then signs the manifest's
//!   bytes into `DIR/model.toml.sig`.
//! - `verify --trusted-key PUB DIR`: what a service with those
//!   `model.trusted_keys` checks before loading: the signature, the manifest
//!   and both hashes (the graph itself is checked by `driftline validate`).
//!
//! Exit code 0 on success, 1 with the reason (and its code) otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::registry::{check_integrity, Refusal};
use crate::score::signature::{self, TrustedKeys};

/// `driftline model` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Create an Ed25519 key pair for signing model versions: KEY and KEY.pub.
    Keygen {
        /// Where to write the secret key; the public key goes to the same path + `.pub`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a model version's manifest (which carries the model's and the reference's SHA-256).
    Sign {
        /// Secret key file from `driftline model keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Model version directory (`models/<name>/<version>`).
        dir: PathBuf,
    },
    /// Verify a model version's signature and hashes as the service would.
    Verify {
        /// Trusted public key: a `.pub` file or the base64 key (repeatable).
        #[arg(long = "trusted-key", required = true)]
        trusted_keys: Vec<String>,
        /// Model version directory (`models/<name>/<version>`).
        dir: PathBuf,
    },
}

/// Runs a `driftline model` subcommand, printing what it did.
pub fn run(command: &ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Keygen { out } => {
            let (public, id) = signature::generate_key(out)?;
            println!(
                "key {id}: secret key {} (keep it private), public key {} (list it in model.trusted_keys)",
                out.display(),
                public.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Sign { key, dir } => {
            let signing = signature::read_signing_key(key)?;
            let integrity = match check_integrity(dir, &TrustedKeys::default()) {
                Ok(i) => i,
                Err(refusal) => return Ok(refused("not signed", &refusal)),
            };
            if let (Some(reference), None) = (
                &integrity.manifest.reference,
                &integrity.manifest.reference_sha256,
            ) {
                eprintln!(
                    "not signed: {}: names reference `{reference}` without `reference_sha256`; add \
                     reference_sha256 = \"<sha256 of {reference}>\" so the signature covers it",
                    dir.join(super::registry::MANIFEST_FILE).display()
                );
                return Ok(ExitCode::FAILURE);
            }
            let path = signature::sign_manifest(dir, &integrity.manifest_bytes, &signing)
                .with_context(|| format!("signing {}", dir.display()))?;
            println!(
                "{}: signed {}/{} with key {}",
                path.display(),
                integrity.manifest.name,
                integrity.manifest.version,
                signature::key_id(&signing.verifying_key())
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Verify { trusted_keys, dir } => {
            let trusted = TrustedKeys::load(trusted_keys)?;
            match check_integrity(dir, &trusted) {
                Ok(i) => {
                    println!(
                        "{}: ok: {}/{} signed by {}; {} and {} match the manifest",
                        dir.display(),
                        i.manifest.name,
                        i.manifest.version,
                        i.signed_by.as_deref().unwrap_or("-"),
                        i.manifest.file,
                        i.manifest
                            .reference
                            .as_deref()
                            .unwrap_or("no reference profile"),
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(refusal) => Ok(refused("refused", &refusal)),
            }
        }
    }
}

fn refused(what: &str, refusal: &Refusal) -> ExitCode {
    eprintln!("{what} ({}): {refusal}", refusal.code());
    ExitCode::FAILURE
}
