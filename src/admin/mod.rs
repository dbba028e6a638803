//! The admin HTTP port: `/metrics`, `/healthz`, `/readyz`, `/v1/models`,
//! `/v1/drift`, the live page (`/` and `/ui`, [`ui`]),
//! `/v1/features/{entity_id}` (`GET`, `PUT`, `DELETE`), and
//! the model lifecycle commands (`POST`):
//! `/v1/models/{name}/versions/{version}/load`,
//! `/v1/models/{name}/versions/{version}/rollout`, and
//! `/v1/models/{name}/{promote|rollback|pause|resume}`.
//!
//! Guarantees: handlers take only short locks (atomics, the store and
//! aggregator shards of one entity), so a slow scrape never stalls scoring;
//! `/v1/features/{id}` (reads of stored, possibly personal, features as
//! well as `PUT`/`DELETE`) and the lifecycle commands answer 401 unless
//! the request carries
//! `Authorization: Bearer <admin.token>` (compared in constant time), and
//! always 401 when no token is configured; the token is checked from the
//! headers alone, before any byte of the body is read; a body is read up
//! to `admin.max_body_bytes` (413 past it); a request that takes longer
//! than `admin.request_timeout` (a slow body, say) is answered 408 and
//! dropped, except a lifecycle command, which reads no body and bounds its
//! own work;
//! `/readyz` answers 200 only once the model is loaded, the store caught up
//! and partitions assigned, and 503 with the reason otherwise; the server
//! stops when its shutdown future resolves, after the scoring loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub mod ui;

use crate::app::Parts;
use crate::drift::monitor::{DriftView, ViewConfig};
use crate::event::{now_ms, Features};
use crate::features::store::Lookup;
use crate::lifecycle::rollout::Command;
use crate::serve::lifecycle::{Hub, HubError};
use crate::serve::HubSlot;
use crate::status::Shared;

/// Errors of the admin server.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin.listen {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin server: {0}")]
    Serve(#[source] std::io::Error),
}

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub metrics: PrometheusHandle,
    pub parts: Parts,
    /// `admin.token`; `None` closes the token-protected endpoints.
    pub token: Option<Arc<str>>,
    /// Body size and time bounds of a request.
    pub limits: HttpLimits,
    /// The model lifecycle, once the scoring loop has started it.
    pub lifecycle: HubSlot,
}

/// Bounds of one admin request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `admin.max_body_bytes`.
    pub max_body_bytes: usize,
    /// `admin.request_timeout`.
    pub request_timeout: std::time::Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 64 * 1024,
            request_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The routes.
pub fn router(state: AdminState) -> Router {
    let limits = state.limits;
    // `route_layer`: the token check runs only on a matched route, and
    // before the handler's extractors, so an unauthorised body is never read.
    let features = Router::new()
        .route(
            "/v1/features/{entity_id}",
            get(features).put(put_features).delete(delete_features),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    // Lifecycle commands read no body, and their work (validating a model,
    // a write read back within 10 s) is the server's, bounded on
    // its own: `admin.request_timeout` would cut it short with a 408 that
    // blames the client.
    let lifecycle = Router::new()
        .route(
            "/v1/models/{name}/versions/{version}/{action}",
            post(version_action),
        )
        .route("/v1/models/{name}/{action}", post(model_action))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/models", get(models))
        .route("/v1/drift", get(drift))
        .route("/", get(live_page))
        .route("/ui", get(live_page))
        .merge(features)
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            time_limit,
        ))
        .merge(lifecycle)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(state)
}

/// Answers 401 from the headers alone unless they carry the token.
async fn require_token(State(s): State<AdminState>, request: Request, next: Next) -> Response {
    match refused(&s, request.headers()) {
        Some(denied) => denied,
        None => next.run(request).await,
    }
}

/// Answers 408 when the request (reading its body included) takes longer
/// than `timeout`; tokio's timer, so no extra dependency.
async fn time_limit(
    State(timeout): State<std::time::Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            format!("request not completed within {timeout:?} (admin.request_timeout)\n"),
        )
            .into_response(),
    }
}

/// Binds `addr` (so a taken port fails start-up, not later) and returns the
/// bound address and the server future, which ends when `shutdown` does.
pub async fn bind(
    addr: &str,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = Result<(), AdminError>>), AdminError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| AdminError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let server = async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(AdminError::Serve)
    };
    Ok((local, server))
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(s): State<AdminState>) -> Response {
    // Alive while starting (connecting included) and while running; dead
    // once the loop or a follower has stopped for good.
    match s.shared.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.shared.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn models(State(s): State<AdminState>) -> Json<Value> {
    if let Some(hub) = s.lifecycle.get() {
        return Json(hub.describe());
    }
    let m = &s.parts.model;
    let manifest = m.manifest();
    Json(json!({
        "models": [{
            "name": m.name(),
            "version": m.version(),
            "variant": "primary",
            "sha256": manifest.sha256,
            "dir": m.dir().display().to_string(),
            "inputs": manifest.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        }]
    }))
}

/// The latest drift evaluation: window, per-column statistics, alert
/// states, performance on labels. 404 when the model has no reference
/// profile (monitoring off); `window: null` until the first window closes.
async fn drift(State(s): State<AdminState>) -> Response {
    let Some(plan) = &s.parts.drift else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "drift monitoring is off: the model has no reference profile, or drift.enabled = false"})),
        )
            .into_response();
    };
    let status = s.shared.drift.read().clone();
    Json(DriftView {
        enabled: true,
        reference: plan.profile().id.clone(),
        config: ViewConfig::of(plan.config()),
        status,
        report: None,
    })
    .into_response()
}

/// The live page: the drift view of the current window, alerts and their
/// history, throughput, latency, rejections and model versions, polled
/// from `/v1/drift`, `/v1/models` and `/metrics` (it shows nothing they do
/// not). Self-contained: no script, style or font from elsewhere.
async fn live_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        ui::live_page(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct At {
    /// Epoch ms at which aggregates are read (default: now).
    at: Option<i64>,
}

async fn features(
    State(s): State<AdminState>,
    Path(entity): Path<String>,
    Query(q): Query<At>,
) -> Json<Value> {
    let now = now_ms();
    let at = q.at.unwrap_or(now);
    let mut store_json = json!({"hit": false, "updated_at": null, "features": {}});
    if let Some(store) = &s.parts.store {
        let mut row = store.new_row();
        if let Lookup::Hit { updated_at_ms } = store.get(&entity, now, &mut row) {
            let mut values = Map::new();
            for (col, c) in store.schema().columns().iter().enumerate() {
                values.insert(c.name.to_string(), store.value(&row, col).to_json());
            }
            store_json = json!({"hit": true, "updated_at": updated_at_ms, "features": values});
        }
    }
    let mut aggregates = Map::new();
    let mut owned = false;
    if let Some(agg) = &s.parts.aggregator {
        let mut values = vec![f64::NAN; agg.specs().len()];
        agg.read(&entity, at, &mut values);
        for (spec, v) in agg.specs().iter().zip(values) {
            let v = serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
            aggregates.insert(spec.name.to_string(), v);
        }
        owned = agg.export_entity(&entity).is_some();
    }
    Json(json!({
        "entity_id": entity,
        "store": store_json,
        "aggregates": aggregates,
        "owned": owned,
        "at": at,
    }))
}

/// `POST /v1/models/{name}/versions/{version}/{load|rollout}`.
async fn version_action(
    State(s): State<AdminState>,
    Path((name, version, action)): Path<(String, String, String)>,
) -> Response {
    let hub = match lifecycle_of(&s, &name) {
        Ok(hub) => hub,
        Err(answer) => return *answer,
    };
    match action.as_str() {
        "load" => {
            lifecycle_call(move || {
                hub.load(&version)?;
                Ok(hub.describe())
            })
            .await
        }
        "rollout" => lifecycle_call(move || hub.start(&version)).await,
        _ => not_found(&format!("no action {action:?} (load, rollout)")),
    }
}

/// `POST /v1/models/{name}/{promote|rollback|pause|resume}`.
async fn model_action(
    State(s): State<AdminState>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let hub = match lifecycle_of(&s, &name) {
        Ok(hub) => hub,
        Err(answer) => return *answer,
    };
    let command = match action.as_str() {
        "promote" => Command::Promote,
        "rollback" => Command::Rollback,
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        _ => {
            return not_found(&format!(
                "no action {action:?} (promote, rollback, pause, resume)"
            ))
        }
    };
    lifecycle_call(move || hub.command(command)).await
}

fn not_found(why: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": why}))).into_response()
}

/// The hub of model `name` (the route layer has checked the token): 404
/// for another model, 503 before the loop started it.
fn lifecycle_of(s: &AdminState, name: &str) -> Result<Arc<Hub>, Box<Response>> {
    let Some(hub) = s.lifecycle.get() else {
        return Err(Box::new(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "the model lifecycle has not started yet"})),
            )
                .into_response(),
        ));
    };
    if hub.model() != name {
        return Err(Box::new(not_found(&format!(
            "no model {name:?} (this instance serves {:?})",
            hub.model()
        ))));
    }
    Ok(hub.clone())
}

/// Runs a lifecycle call (validation, a write read back) off the runtime:
/// 200 with `/v1/models`, or the error's code: 409 for a command the
/// state refuses, 422 for a version that is not loaded, 503 otherwise.
async fn lifecycle_call(f: impl FnOnce() -> Result<Value, HubError> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => {
            let status = match e {
                HubError::Command(_) => StatusCode::CONFLICT,
                HubError::NotLoaded { .. } | HubError::NoPlan { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (
                status,
                Json(json!({"error": e.code(), "detail": e.to_string()})),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "internal", "detail": e.to_string()})),
        )
            .into_response(),
    }
}

/// The 401 answer, unless the request carries the configured bearer token.
fn refused(s: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let unauthorized = |why: &str| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            format!("{why}\n"),
        )
            .into_response()
    };
    let Some(token) = &s.token else {
        return Some(unauthorized(
            "this endpoint needs admin.token to be configured",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    (!constant_time_eq(given.as_bytes(), token.as_bytes()))
        .then(|| unauthorized("missing or wrong bearer token"))
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// `PUT /v1/features/{id}` body: columns to upsert, and their update time.
#[derive(Debug, Deserialize)]
struct Upsert {
    features: serde_json::Map<String, Value>,
    ts: Option<i64>,
}

async fn put_features(
    State(s): State<AdminState>,
    Path(entity): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(store) = &s.parts.store else {
        return (StatusCode::NOT_FOUND, "the model reads no store features\n").into_response();
    };
    let upsert: Upsert = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("body: {e}\n")).into_response();
        }
    };
    let mut features = Features::default();
    for (name, value) in upsert.features {
        let value = match value {
            Value::Null => crate::event::FeatureValue::Null,
            Value::Bool(b) => crate::event::FeatureValue::Bool(b),
            Value::Number(n) => match n.as_f64() {
                Some(x) => crate::event::FeatureValue::Number(x),
                None => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("{name}: not a finite number\n"),
                    )
                        .into_response()
                }
            },
            Value::String(t) => crate::event::FeatureValue::Text(t.into()),
            other => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("{name}: expected a number, string, bool or null, got {other}\n"),
                )
                    .into_response()
            }
        };
        features.insert(name, value);
    }
    match store.upsert(&entity, &features, upsert.ts.unwrap_or_else(now_ms)) {
        Ok(outcome) => {
            tracing::info!(entity, "store row changed through the admin API");
            Json(json!({
                "entity_id": entity,
                "created": outcome.created,
                "unknown_columns": outcome.unknown_columns.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

async fn delete_features(State(s): State<AdminState>, Path(entity): Path<String>) -> Response {
    let deleted = s.parts.store.as_ref().is_some_and(|st| st.delete(&entity));
    if deleted {
        tracing::info!(entity, "store row deleted through the admin API");
    }
    Json(json!({"entity_id": entity, "deleted": deleted})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::store::{Column, FeatureStore, StoreConfig, StoreSchema};

    /// One HTTP/1.1 exchange over a blocking socket, off the runtime thread.
    async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        use std::io::{Read, Write};
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
            (status, raw)
        })
        .await
        .unwrap()
    }

    fn state(token: Option<&str>) -> AdminState {
        let schema = StoreSchema::new(vec![
            Column::numeric("credit_limit"),
            Column::categorical("card_tier"),
        ])
        .unwrap();
        let store = Arc::new(FeatureStore::new(schema, StoreConfig::default()));
        let manifest = crate::score::Manifest::parse(
            include_str!("../../models/fraud-mlp/1/model.toml"),
            std::path::Path::new("models/fraud-mlp/1/model.toml"),
        )
        .unwrap();
        let model = crate::score::Model::from_bytes(
            manifest,
            include_bytes!("../../models/fraud-mlp/1/model.onnx"),
            std::path::Path::new("models/fraud-mlp/1"),
        )
        .unwrap();
        AdminState {
            shared: Arc::new(Shared::default()),
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
            parts: Parts {
                model: Arc::new(model),
                store: Some(store),
                aggregator: None,
                drift: None,
            },
            token: token.map(Into::into),
            limits: HttpLimits::default(),
            lifecycle: Arc::default(),
        }
    }

    #[test]
    fn the_live_page_and_the_drift_view_are_read_without_a_token() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut st = state(Some("s3cret-token-0123456789"));
            let plan = crate::app::drift_plan(
                &crate::config::Config {
                    model: crate::config::ModelConfig {
                        dir: "models/fraud-mlp/1".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                st.parts.model.manifest(),
            )
            .unwrap()
            .unwrap();
            st.parts.drift = Some(Arc::new(plan));
            let (addr, server) = bind("127.0.0.1:0", st, std::future::pending())
                .await
                .unwrap();
            tokio::spawn(server);
            for path in ["/", "/ui"] {
                let (status, raw) = request(addr, "GET", path, None, "").await;
                assert_eq!(status, 200, "{path}");
                assert!(raw.contains("content-type: text/html"), "{raw:.300}");
                assert!(raw.contains("const DriftView"), "the renderer is inlined");
            }
            // The view's schema: the DriftView type, no `report`, history
            // empty before the first window.
            let (status, raw) = request(addr, "GET", "/v1/drift", None, "").await;
            assert_eq!(status, 200);
            let body = raw.split("\r\n\r\n").nth(1).unwrap();
            let view: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(view["enabled"], true);
            assert_eq!(view["config"]["window_events"], 5000);
            assert!(view["status"]["history"].as_array().unwrap().is_empty());
            assert!(view.get("report").is_none());
        });
    }

    #[test]
    fn state_changing_endpoints_need_the_bearer_token() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let token = "s3cret-token-0123456789";
            let st = state(Some(token));
            let store = st.parts.store.clone().unwrap();
            let (addr, server) = bind("127.0.0.1:0", st, std::future::pending())
                .await
                .unwrap();
            tokio::spawn(server);
            let body = r#"{"features": {"credit_limit": 900}, "ts": 5}"#;
            let path = "/v1/features/card-1";
            assert_eq!(request(addr, "PUT", path, None, body).await.0, 401);
            assert_eq!(
                request(addr, "PUT", path, Some("wrong-token"), body)
                    .await
                    .0,
                401
            );
            assert!(store.is_empty(), "a refused request changes nothing");
            let (status, text) = request(addr, "PUT", path, Some(token), body).await;
            assert_eq!(status, 200, "{text}");
            assert_eq!(store.len(), 1);
            assert_eq!(request(addr, "GET", path, None, "").await.0, 401);
            let (status, text) = request(addr, "GET", path, Some(token), "").await;
            assert_eq!(status, 200, "{text}");
            assert!(text.contains("\"credit_limit\":900.0"), "{text}");
            let bad = r#"{"features": {"credit_limit": [1]}}"#;
            assert_eq!(request(addr, "PUT", path, Some(token), bad).await.0, 400);
            assert_eq!(request(addr, "DELETE", path, None, "").await.0, 401);
            assert_eq!(store.len(), 1);
            let (status, text) = request(addr, "DELETE", path, Some(token), "").await;
            assert_eq!(status, 200);
            assert!(text.contains("\"deleted\":true"), "{text}");
            assert!(store.is_empty());

            // Every lifecycle endpoint checks the token before anything else.
            for path in [
                "/v1/models/fraud-mlp/versions/2/load",
                "/v1/models/fraud-mlp/versions/2/rollout",
                "/v1/models/fraud-mlp/promote",
                "/v1/models/fraud-mlp/rollback",
                "/v1/models/fraud-mlp/pause",
                "/v1/models/fraud-mlp/resume",
            ] {
                assert_eq!(request(addr, "POST", path, None, "").await.0, 401, "{path}");
                assert_eq!(
                    request(addr, "POST", path, Some("wrong-token"), "").await.0,
                    401,
                    "{path}"
                );
                // With the token, this loop-less server has no lifecycle yet.
                assert_eq!(request(addr, "POST", path, Some(token), "").await.0, 503);
            }

            // No token configured: the endpoints stay shut.
            let (addr, server) = bind("127.0.0.1:0", state(None), std::future::pending())
                .await
                .unwrap();
            tokio::spawn(server);
            assert_eq!(request(addr, "DELETE", path, Some(token), "").await.0, 401);
        });
    }

    /// Sends `head` (request line and headers, without the blank line) and
    /// `body`, then reads what the server answers within `wait`: its status
    /// and text, or `None` when it answered nothing.
    async fn exchange(
        addr: SocketAddr,
        head: String,
        body: Vec<u8>,
        wait: std::time::Duration,
    ) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(wait)).unwrap();
            s.write_all(format!("{head}\r\n").as_bytes()).unwrap();
            // The server may answer and close before taking all of it.
            let _ = s.write_all(&body);
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let status = raw.split_whitespace().nth(1)?.parse().ok()?;
            Some((status, raw))
        })
        .await
        .unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    const TOKEN: &str = "s3cret-token-0123456789";
    const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

    #[test]
    fn the_token_is_checked_before_the_body_is_read() {
        runtime().block_on(async {
            let (addr, server) = bind("127.0.0.1:0", state(Some(TOKEN)), std::future::pending())
                .await
                .unwrap();
            tokio::spawn(server);
            // A 1 GB body announced, 1 KiB of it sent: 401 at once.
            let head = "PUT /v1/features/card-1 HTTP/1.1\r\nHost: x\r\n\
                        Content-Type: application/json\r\nContent-Length: 1000000000\r\n";
            let (status, text) = exchange(addr, head.into(), vec![b' '; 1024], WAIT)
                .await
                .expect("an answer without the body");
            assert_eq!(status, 401, "{text}");
            // Under any body limit, and with a wrong token: still not read.
            let head = "PUT /v1/features/card-1 HTTP/1.1\r\nHost: x\r\n\
                        Authorization: Bearer wrong-token-0123456789\r\n\
                        Content-Type: application/json\r\nContent-Length: 1000\r\n";
            let (status, text) = exchange(addr, head.into(), b"{\"features\"".to_vec(), WAIT)
                .await
                .expect("an answer without the body");
            assert_eq!(status, 401, "{text}");
            // A lifecycle command: the same, and with the token its body
            // (which it has no use for) is not read either.
            let with_token = format!("Authorization: Bearer {TOKEN}\r\n");
            for (auth, expected) in [
                ("", 401),
                ("Authorization: Bearer wrong-token-0123456789\r\n", 401),
                // This loop-less server has no lifecycle yet.
                (with_token.as_str(), 503),
            ] {
                let head = format!(
                    "POST /v1/models/fraud-mlp/versions/2/load HTTP/1.1\r\nHost: x\r\n{auth}\
                     Content-Length: 1000000000\r\n"
                );
                let (status, text) = exchange(addr, head, vec![b' '; 1024], WAIT)
                    .await
                    .expect("an answer without the body");
                assert_eq!(status, expected, "{text}");
            }
        });
    }

    #[test]
    fn a_body_past_the_limit_is_refused_with_the_token() {
        runtime().block_on(async {
            let st = state(Some(TOKEN));
            let store = st.parts.store.clone().unwrap();
            let (addr, server) = bind("127.0.0.1:0", st, std::future::pending())
                .await
                .unwrap();
            tokio::spawn(server);
            // The report's 1.9 MB category value.
            let body = format!(
                r#"{{"features": {{"card_tier": "{}"}}, "ts": 5}}"#,
                "g".repeat(1_900_000)
            );
            let head = format!(
                "PUT /v1/features/card-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            let (status, text) = exchange(addr, head, body.into_bytes(), WAIT)
                .await
                .expect("an answer");
            assert_eq!(status, 413, "{text}");
            assert!(store.is_empty(), "nothing was stored");
        });
    }

    #[test]
    fn a_request_that_does_not_finish_is_answered_408() {
        runtime().block_on(async {
            let mut st = state(Some(TOKEN));
            st.limits.request_timeout = std::time::Duration::from_millis(200);
            let (addr, server) = bind("127.0.0.1:0", st, std::future::pending())
                .await
                .unwrap();
            tokio::spawn(server);
            // 100 bytes announced, 10 sent, then silence.
            let head = format!(
                "PUT /v1/features/card-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n"
            );
            let (status, text) = exchange(addr, head, b"{\"features\"".to_vec(), WAIT)
                .await
                .expect("an answer before the client gives up");
            assert_eq!(status, 408, "{text}");
        });
    }

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
