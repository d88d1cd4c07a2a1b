//! Health and the API's own description.

use axum::Json;

use crate::views::Health;

#[utoipa::path(get, path = "/health", tag = "meta", security(()), responses((status = 200, description = "The process answers", body = Health)))]
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}
