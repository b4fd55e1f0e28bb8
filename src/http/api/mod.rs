//! The `/lb` scope: the balancer's own API under `/lb/api/` (`status`, `events`, the pool's
//! `backends` and `reload`, the simulation controls; every route admin-protected through [`crate::http::admin`]), the open
//! `/lb/metrics` and `/lb/health`, and the status page. Every other path under `/lb/` is a JSON
//! 404 and a wrong method a JSON 405: nothing of this namespace is ever proxied.

mod backends;
mod events;
mod pools;
mod simulation;
mod state;
mod status;

use actix_web::web;

use crate::http::error::{method_not_allowed, not_found, only};
use crate::http::page;
pub use state::ApiState;

/// Registers everything under `/lb`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/lb")
            .service(
                web::scope("/api")
                    .service(only("/status", web::get().to(status::status)))
                    .service(only("/events", web::get().to(events::events)))
                    .service(
                        only("/backends", web::get().to(backends::list))
                            .route(web::post().to(backends::add)),
                    )
                    .service(
                        only("/backends/{name}", web::get().to(backends::show))
                            .route(web::patch().to(backends::update))
                            .route(web::delete().to(backends::remove)),
                    )
                    .service(
                        only("/pools", web::get().to(pools::list))
                            .route(web::post().to(pools::add)),
                    )
                    .service(
                        only("/pools/{pool}", web::get().to(pools::show))
                            .route(web::patch().to(pools::update))
                            .route(web::delete().to(pools::remove)),
                    )
                    .service(
                        only("/routes", web::get().to(pools::routes))
                            .route(web::put().to(pools::replace_routes)),
                    )
                    .service(
                        only("/pools/{pool}/backends", web::get().to(backends::list))
                            .route(web::post().to(backends::add)),
                    )
                    .service(
                        only(
                            "/pools/{pool}/backends/{name}",
                            web::get().to(backends::show),
                        )
                        .route(web::patch().to(backends::update))
                        .route(web::delete().to(backends::remove)),
                    )
                    .service(only("/reload", web::post().to(backends::reload)))
                    .service(
                        web::resource("/simulation/{backend}/{action}")
                            .route(web::post().to(simulation::control))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .default_service(web::to(not_found)),
            )
            .service(only("/metrics", web::get().to(status::metrics)))
            .service(
                only("/health", web::get().to(status::health))
                    .route(web::head().to(status::health)),
            )
            .configure(page::configure)
            .default_service(web::to(not_found)),
    );
}
