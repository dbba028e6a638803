//! Golden and reference tests of the library, no broker and no binary:
//! drift statistics against SciPy, rolling metrics against scikit-learn,
//! models and tree ensembles against onnxruntime (fixtures in
//! `tests/fixtures/`, from `scripts/make_*.py`), and the drift monitor
//! against its own exact expectations. One binary, so the heavy
//! dependencies are linked once.

mod drift_monitor;
mod drift_parity;
mod drift_replay;
mod drift_tests_parity;
mod label_parity;
mod model_parity;
mod tree_parity;
