//! The `driftline demo`: synthetic traffic for trying the service without a
//! real producer.
//!
//! [`generator`] is a seeded source of card-fraud events (and of the matching
//! feature-store snapshot) that follows the same generative model as the data
//! the bundled `fraud-mlp` and `fraud-rf` models were trained on
//! (`scripts/make_models.py`), with optional injected shifts to demo drift
//! alerts. It is also what the load tests replay.

pub mod generator;
pub mod run;
