//! The client admin API, `/clients`: register, list, read, change and remove clients with their
//! own limits (and their own limits on routes). Bodies are read by [`super::client_body`]; a
//! client created without `rate_per_sec` gets `rate_limit.default_rate_per_sec`. Each invalid
//! field is a 400 naming it; a body over 64 KiB is 413 and a non-JSON content type 415. A write is durable
//! before it is answered: committed to SQLite for a single instance, written to Redis's registry
//! in cluster mode (and mirrored into each instance's SQLite after); when that fails the answer
//! is 503 and nothing changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::client::{ClientRecord, Limits};
use crate::events::{Events, LbEvent};
use crate::http::admin::{self, AdminError};
use crate::http::client_body::{parse_input, ClientInput};
use crate::http::client_routes::{self, RouteChanges};
use crate::http::error::{json_response, not_found, only};
use crate::http::json_body::{body_status, read_json, BodyError};
use crate::limiter::{ClientError, CreateClient, Limiter, UpdateClient};
use crate::registry::Pools;
use crate::route::RouteLimits;
use crate::settings::{AdminSettings, Settings};

/// What the client handlers share.
pub struct ClientsState {
    pub limiter: Arc<Limiter>,
    /// Where client changes are published.
    pub events: Events,
    pub admin: AdminSettings,
    /// `rate_limit.default_rate_per_sec`, for clients created without a rate.
    pub default_rate_per_sec: f64,
    /// The routes a client's own limits may name.
    pub pools: Arc<Pools>,
}

impl ClientsState {
    pub fn new(
        settings: &Settings,
        limiter: Arc<Limiter>,
        events: Events,
        pools: Arc<Pools>,
    ) -> Self {
        Self {
            limiter,
            events,
            admin: settings.admin.clone(),
            default_rate_per_sec: settings.rate_limit.default_rate_per_sec,
            pools,
        }
    }

    /// The route changes of `input`, checked against the running routes.
    fn routes(&self, input: &mut ClientInput) -> Result<RouteChanges, ApiError> {
        let Some(changes) = input.routes.take() else {
            return Ok(RouteChanges::new());
        };
        client_routes::check_known(&changes, &self.pools.load()).map_err(ApiError::BadRequest)?;
        Ok(changes)
    }
}

/// Everything `/clients` can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Body(err) => body_status(err),
            Self::Client(ClientError::NotFound(_)) => StatusCode::NOT_FOUND,
            Self::Client(ClientError::Exists(_)) => StatusCode::CONFLICT,
            Self::Client(ClientError::Storage(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Admin(err) => err.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Admin(err) => err.error_response(),
            other => json_response(other.status_code(), &other.to_string()),
        }
    }
}

/// Registers `/clients` and everything under it: unknown paths there (`/clients/`,
/// `/clients/a/b`) are JSON 404s, never proxied.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/clients")
            .configure(routes)
            .default_service(web::to(not_found)),
    );
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(only("", web::post().to(create)).route(web::get().to(list)))
        .service(only("/register", web::post().to(create)))
        .service(only("/update", web::put().to(update_from_body)))
        .service(
            only("/{id}", web::get().to(get))
                .route(web::put().to(update))
                .route(web::delete().to(remove)),
        );
}

/// A client as the API answers it.
#[derive(Debug, Serialize)]
struct ClientBody<'a> {
    client_id: &'a str,
    name: Option<&'a str>,
    capacity: u64,
    rate_per_sec: f64,
    tokens: f64,
    /// Its own limits on routes, when it has any.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    routes: BTreeMap<&'a str, RouteLimits>,
}

fn client_json(record: &ClientRecord) -> ClientBody<'_> {
    ClientBody {
        client_id: &record.client_id,
        name: record.name.as_deref(),
        capacity: record.limits.capacity,
        rate_per_sec: record.limits.rate_per_sec,
        tokens: record.tokens,
        routes: record
            .routes
            .iter()
            .map(|(route, l)| {
                let limits = RouteLimits {
                    capacity: l.capacity,
                    rate_per_sec: l.rate_per_sec,
                };
                (route.as_str(), limits)
            })
            .collect(),
    }
}

async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ClientsState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let mut input = parse_body(&req, payload).await?;
    let routes = state.routes(&mut input)?;
    let client_id = input.client_id.ok_or_else(|| missing("client_id"))?;
    let capacity = input.capacity.ok_or_else(|| missing("capacity"))?;
    let limits = Limits {
        capacity,
        rate_per_sec: input.rate_per_sec.unwrap_or(state.default_rate_per_sec),
    };
    let record = state
        .limiter
        .create(CreateClient {
            client_id,
            name: input.name.flatten(),
            limits,
            routes: routes
                .into_iter()
                .filter_map(|(route, limits)| Some((route, limits?)))
                .collect(),
        })
        .await?;
    log::info!(
        "client {} registered (capacity {}, {}/s)",
        record.client_id,
        capacity,
        limits.rate_per_sec
    );
    announce(&state, "created", &record.client_id);
    Ok(HttpResponse::Created().json(client_json(&record)))
}

async fn list(req: HttpRequest, state: web::Data<ClientsState>) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let clients = state.limiter.list().await?;
    Ok(HttpResponse::Ok().json(clients.iter().map(client_json).collect::<Vec<_>>()))
}

async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ClientsState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let record = state.limiter.get(path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(client_json(&record)))
}

async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ClientsState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let input = parse_body(&req, payload).await?;
    let id = path.into_inner();
    if input
        .client_id
        .as_ref()
        .is_some_and(|body_id| *body_id != id)
    {
        return Err(ApiError::BadRequest(
            "client_id: does not match the path".into(),
        ));
    }
    apply_update(id, input, &state).await
}

async fn update_from_body(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ClientsState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let mut input = parse_body(&req, payload).await?;
    let id = input.client_id.take().ok_or_else(|| missing("client_id"))?;
    apply_update(id, input, &state).await
}

async fn apply_update(
    id: String,
    mut input: ClientInput,
    state: &ClientsState,
) -> Result<HttpResponse, ApiError> {
    let routes = state.routes(&mut input)?;
    let record = state
        .limiter
        .update(UpdateClient {
            client_id: id,
            name: input.name,
            capacity: input.capacity,
            rate_per_sec: input.rate_per_sec,
            routes,
        })
        .await?;
    log::info!("client {} updated", record.client_id);
    announce(state, "updated", &record.client_id);
    Ok(HttpResponse::Ok().json(client_json(&record)))
}

async fn remove(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ClientsState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin)?;
    let id = path.into_inner();
    state.limiter.remove(id.clone()).await?;
    log::info!("client {id} deleted");
    announce(&state, "deleted", &id);
    Ok(HttpResponse::NoContent().finish())
}

fn announce(state: &ClientsState, action: &'static str, client_id: &str) {
    state.events.publish(LbEvent::Client {
        action,
        client_id: client_id.to_owned(),
    });
}

fn missing(field: &str) -> ApiError {
    ApiError::BadRequest(format!("{field}: missing"))
}

/// Checks the content type, reads at most 64 KiB, and validates every field.
async fn parse_body(req: &HttpRequest, payload: web::Payload) -> Result<ClientInput, ApiError> {
    let body = read_json(req, payload).await?;
    parse_input(&body).map_err(ApiError::BadRequest)
}
