//! The floor under `bench/cpu.sh`: actix-web answering `200 ok` by itself, on two workers as
//! the balancer runs, with no proxying, no middleware and no state. Its CPU time per request
//! next to nginx's `return 200` is what the server framework costs before the balancer does
//! anything.
//!
//! ```text
//! cargo run --release --example bare_ok -- 127.0.0.1:19301
//! ```

use actix_web::{web, App, HttpResponse, HttpServer};

/// The balancer's allocator, so that the two compare.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: bare_ok ADDRESS");
        std::process::exit(2);
    };
    let served = actix_rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new().default_service(web::to(|| async { HttpResponse::Ok().body("ok\n") }))
        })
        .workers(2)
        .bind(&addr)?
        .run()
        .await
    });
    if let Err(err) = served {
        eprintln!("bare_ok: {err}");
        std::process::exit(1);
    }
}
