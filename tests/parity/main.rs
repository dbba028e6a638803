//! Golden and reference tests of the library, no broker and no binary:
//! drift statistics against SciPy, rolling metrics against scikit-learn,
//! models and tree ensembles against onnxruntime (fixtures in
//! `tests/fixtures/`, from `scripts/make_*.py`), the drift monitor
//! against its own exact expectations and bounds, and the input rules
//! (decoding, ids, event time, store dictionaries) as issue 15 reported
//! them. One binary, so the heavy dependencies are linked once.
//! (`tests/arrow_bounds.rs` and `tests/store_memory.rs` are binaries of
//! their own: each counts the heap with a global allocator, which other
//! tests running in parallel would disturb.)

mod drift_bounds;
mod drift_monitor;
mod drift_parity;
mod drift_replay;
mod drift_tests_parity;
mod input_rules;
mod label_parity;
mod model_parity;
mod tree_parity;
