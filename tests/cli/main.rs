//! Black-box tests of the `driftline` binary and the repository around it:
//! the commands (`validate`, `score`, `demo`, `profile`, `report`, `model`), the report
//! and live pages in a headless browser, the container and Kubernetes
//! assets, the metrics under a real Prometheus, and the module layout's
//! import rules. One binary, so the library is linked once for all of them.

mod commands;
mod docker_assets;
mod kubernetes_assets;
mod layout;
mod lifecycle;
mod profile;
mod prometheus;
mod report;
mod report_browser;
