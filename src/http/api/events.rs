//! `GET /lb/api/events`: server-sent events, one `data:` JSON line per event with its `id:`.
//! The kept history comes first (a page opened now shows the last events and five minutes of
//! stats at once), then live events. A reconnecting browser sends `Last-Event-ID` and gets only
//! what it missed. The stream ends when the balancer drains, so open status pages never hold up
//! a shutdown. The token may come as `?access_token=`, since a browser's EventSource cannot
//! send headers.

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::state::{ApiError, ApiState};
use crate::events::Stamped;
use crate::http::admin;

#[derive(Deserialize)]
struct TokenQuery {
    access_token: String,
}

/// `GET /lb/api/events`.
pub async fn events(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    admin::authorize(&req, &state.admin).or_else(|err| {
        let token = web::Query::<TokenQuery>::from_query(req.query_string()).ok();
        match (token, &state.admin.token) {
            (Some(query), Some(expected))
                if admin::token_matches(&query.access_token, expected) =>
            {
                Ok(())
            }
            _ => Err(err),
        }
    })?;
    let after = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let subscription = state
        .events
        .subscribe(after)
        .await
        .ok_or_else(|| ApiError::Unavailable("The event stream has stopped".into()))?;
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(Bytes::from_static(b"retry: 2000\n: connected\n\n"))
    });
    let history = futures_util::stream::iter(
        subscription
            .history
            .into_iter()
            .map(|event| Ok::<_, Infallible>(frame(&event))),
    );
    let draining = state.draining.clone();
    let live = futures_util::stream::unfold(subscription.live, move |mut live| {
        let draining = draining.clone();
        async move {
            let event = live.recv().await?;
            if draining.is_draining() {
                return None;
            }
            Some((Ok::<_, Infallible>(frame(&event)), live))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(hello.chain(history).chain(live)))
}

/// One server-sent event: `id: 7\ndata: {...}\n\n`.
fn frame(event: &Stamped) -> Bytes {
    let json = serde_json::to_string(event).expect("an event serializes to JSON");
    Bytes::from(format!("id: {}\ndata: {json}\n\n", event.id))
}
