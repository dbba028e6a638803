//! The admin HTTP port: `/metrics`, `/healthz`, `/readyz`, `/v1/models`,
//! `/v1/features/{entity_id}`.
//!
//! Guarantees: handlers only read shared state (atomics, the store and
//! aggregator locks for one entity), so a slow scrape never stalls scoring;
//! `/readyz` answers 200 only once the model is loaded, the store caught up
//! and partitions assigned, and 503 with the reason otherwise; the server
//! stops when its shutdown future resolves, after the scoring loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::app::Parts;
use crate::event::now_ms;
use crate::features::store::Lookup;
use crate::serve::Shared;

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
}

/// The routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/models", get(models))
        .route("/v1/features/{entity_id}", get(features))
        .with_state(state)
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
    // Alive while starting (not yet running) and while running; dead once
    // the loop has stopped for good with the model loaded.
    let stopped = s.shared.model_loaded.load(Ordering::Acquire)
        && !s.shared.running.load(Ordering::Acquire)
        && s.shared.assigned.load(Ordering::Acquire) > 0;
    if stopped {
        (StatusCode::SERVICE_UNAVAILABLE, "scoring loop stopped\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.shared.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn models(State(s): State<AdminState>) -> Json<Value> {
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
