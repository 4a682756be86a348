//! The limits the gateway is measured against: a trivial axum route, and axum plus one sqlx
//! primary-key select of a whole `jobs` row returned as JSON. No middleware, no auth.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

pub async fn serve(bind: &str, database_url: &str, max_connections: u32) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect(database_url)
        .await?;
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "{\"status\":\"ok\"}",
                )
            }),
        )
        .route("/row/{id}", get(row))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("baseline listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn row(State(pool): State<PgPool>, Path(id): Path<Uuid>) -> impl IntoResponse {
    let found: Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar("SELECT row_to_json(j)::text FROM jobs j WHERE id = $1")
            .bind(id)
            .fetch_optional(&pool)
            .await;
    match found {
        Ok(Some(json)) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}
