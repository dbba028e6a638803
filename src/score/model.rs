//! A loaded model: manifest + verified ONNX file + optimised tract plan.
//!
//! Guarantees: a [`Model`] exists only if its file matched the manifest's
//! SHA-256, tract accepted the graph with a symbolic batch dimension, the score
//! output exists, and a dry run on one row produced a `[1, k]` output with the
//! score column in range. The plan is built once and shared (`Arc`); each
//! scoring thread owns a [`Session`] so runs never contend.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::manifest::{Manifest, ManifestError};

/// The runnable plan type tract gives us.
type Plan = Arc<TypedRunnableModel>;

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: cannot read model file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: sha256 mismatch: manifest says {expected}, file is {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: tract cannot load the model: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Shape { path: PathBuf, detail: String },
    #[error("model {model}: scoring failed: {detail}")]
    Run { model: String, detail: String },
}

/// A model ready to score.
#[derive(Debug)]
pub struct Model {
    manifest: Manifest,
    dir: PathBuf,
    plan: Plan,
    width: usize,
    /// Columns of the score output tensor, learnt from the dry run.
    output_columns: usize,
    /// Size of the ONNX file: what the model's weights hold in memory,
    /// about (the lifecycle's bound on loaded versions counts it).
    onnx_bytes: usize,
}

/// The ONNX front-end with every op driftline knows about.
///
/// This is the one place where driftline's own op implementations are
/// registered into tract's ONNX op register (`Onnx::op_register`), so that the
/// rest of the graph keeps running on tract.
pub fn onnx_framework() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    // Tree ensembles: tract's own classifier is ~1000x slower than
    // onnxruntime and it has no regressor (see `score::trees`).
    crate::score::trees::register(&mut onnx.op_register);
    onnx
}

/// Hex SHA-256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Row width the graph declares for its input (`[batch, width]`), when concrete.
fn declared_width(model: &InferenceModel) -> Option<usize> {
    let fact = model.input_fact(0).ok()?;
    let dims: Vec<_> = fact.shape.dims().cloned().collect();
    match dims.as_slice() {
        [_, width] => width.concretize()?.to_i64().ok().map(|w| w as usize),
        _ => None,
    }
}

impl Model {
    /// Loads `dir/model.toml` and the ONNX file it names.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let manifest = Manifest::load(&dir.join("model.toml"))?;
        Self::from_manifest(manifest, dir)
    }

    /// Loads the ONNX file of an already validated manifest.
    pub fn from_manifest(manifest: Manifest, dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(&manifest.file);
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Read {
            path: path.clone(),
            source,
        })?;
        Self::from_bytes(manifest, &bytes, dir)
    }

    /// Builds a model from ONNX bytes held in memory (e.g. built into the
    /// binary); `dir` is where the model is said to live, for messages.
    pub fn from_bytes(manifest: Manifest, bytes: &[u8], dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(&manifest.file);
        let actual = sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(ModelError::Checksum {
                path,
                expected: manifest.sha256.clone(),
                actual,
            });
        }
        let width = manifest.row_width();
        let load_err = |e: TractError| ModelError::Load {
            path: path.clone(),
            detail: format!("{e:#}"),
        };
        let mut model = onnx_framework()
            .model_for_read(&mut &*bytes)
            .map_err(load_err)?;
        if model.inputs.len() != 1 {
            return Err(ModelError::Shape {
                path,
                detail: format!(
                    "expected one input tensor (the encoded row), the graph has {}",
                    model.inputs.len()
                ),
            });
        }
        if let Some(declared) = declared_width(&model) {
            if declared != width {
                return Err(ModelError::Shape {
                    path,
                    detail: format!(
                        "the manifest's inputs encode {width} floats per row, the graph's input takes {declared}"
                    ),
                });
            }
        }
        // The batch symbol must come from the model's own scope: a symbol from a
        // fresh scope passes optimisation but fails to resolve at run time.
        let batch = model.symbols.sym("N");
        let fact = InferenceFact::dt_shape(
            f32::datum_type(),
            [TDim::Sym(batch), TDim::Val(width as i64)],
        );
        model.set_input_fact(0, fact).map_err(load_err)?;
        model
            .select_outputs_by_name([manifest.score.output.as_str()])
            .map_err(|e| ModelError::Shape {
                path: path.clone(),
                detail: format!(
                    "score.output {:?} is not an output of the graph: {e}",
                    manifest.score.output
                ),
            })?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(load_err)?;
        let mut loaded = Model {
            manifest,
            dir: dir.to_owned(),
            plan,
            width,
            output_columns: 0,
            onnx_bytes: bytes.len(),
        };
        loaded.output_columns = loaded.dry_run(&path)?;
        Ok(loaded)
    }

    /// Runs one all-zero row to learn the output width and catch a manifest
    /// that does not fit the graph before any traffic does.
    fn dry_run(&self, path: &Path) -> Result<usize, ModelError> {
        let shape_err = |detail: String| ModelError::Shape {
            path: path.to_owned(),
            detail,
        };
        let input = Tensor::zero::<f32>(&[1, self.width]).map_err(|e| shape_err(e.to_string()))?;
        let out = self.plan.run(tvec![input.into_tvalue()]).map_err(|e| {
            shape_err(format!(
                "dry run with a [1, {}] row failed (does the manifest's input list match the graph?): {e:#}",
                self.width
            ))
        })?;
        let first = out
            .first()
            .ok_or_else(|| shape_err("the graph produced no output".into()))?;
        let shape = first.shape();
        if first.datum_type() != f32::datum_type() {
            return Err(shape_err(format!(
                "score output {:?} is {:?}, expected f32",
                self.manifest.score.output,
                first.datum_type()
            )));
        }
        let columns = match shape {
            [1, k] => *k,
            [1] => 1,
            other => {
                return Err(shape_err(format!(
                    "score output {:?} has shape {other:?} for one row, expected [1, k]",
                    self.manifest.score.output
                )))
            }
        };
        if self.manifest.score.index >= columns {
            return Err(shape_err(format!(
                "score.index {} is out of range: output {:?} has {columns} column(s)",
                self.manifest.score.index, self.manifest.score.output
            )));
        }
        Ok(columns)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Size of the ONNX file the model was built from.
    pub fn onnx_bytes(&self) -> usize {
        self.onnx_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    /// Width of the encoded input row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// A per-thread scoring session over the shared plan.
    pub fn session(self: &Arc<Self>) -> Result<Session, ModelError> {
        let state = self.plan.spawn().map_err(|e| self.run_err(e))?;
        Ok(Session {
            model: Arc::clone(self),
            state,
        })
    }

    fn run_err(&self, e: impl std::fmt::Display) -> ModelError {
        ModelError::Run {
            model: format!("{}/{}", self.manifest.name, self.manifest.version),
            detail: e.to_string(),
        }
    }
}

/// One thread's handle for scoring batches; reuses tract's per-run state.
#[derive(Debug)]
pub struct Session {
    model: Arc<Model>,
    state: TypedSimpleState,
}

impl Session {
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Scores `rows` (row-major, `n × width` floats) and appends `n` scores to `out`.
    pub fn score(&mut self, rows: &[f32], out: &mut Vec<f32>) -> Result<(), ModelError> {
        let width = self.model.width;
        if rows.is_empty() {
            return Ok(());
        }
        if !rows.len().is_multiple_of(width) {
            return Err(self.model.run_err(format!(
                "{} floats is not a whole number of {width}-wide rows",
                rows.len()
            )));
        }
        let n = rows.len() / width;
        let input = Tensor::from_shape(&[n, width], rows).map_err(|e| self.model.run_err(e))?;
        let outputs = self
            .state
            .run(tvec![input.into_tvalue()])
            .map_err(|e| self.model.run_err(e))?;
        let first = outputs
            .first()
            .ok_or_else(|| self.model.run_err("no output"))?;
        let values = first
            .try_as_plain_ram()
            .and_then(|p| p.as_slice::<f32>())
            .map_err(|e| self.model.run_err(e))?;
        let k = self.model.output_columns;
        let index = self.model.manifest.score.index;
        if values.len() != n * k {
            return Err(self.model.run_err(format!(
                "expected {} output values for {n} rows, got {}",
                n * k,
                values.len()
            )));
        }
        out.extend(values.chunks_exact(k).map(|row| row[index]));
        Ok(())
    }
}
