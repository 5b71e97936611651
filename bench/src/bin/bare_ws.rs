//! switchboard-bare-ws: the baseline the idle scenario measures the broker against. A bare
//! actix-web-actors WebSocket server on the same stack, allocator and allocator settings as the
//! broker (actix-web, actix-web-actors, jemalloc with a background thread): one actor per
//! socket that pings every 15 s, as the broker does by default, and echoes text frames, and
//! nothing else. What the broker holds per connection above this is its own state.
//!
//! `switchboard-bare-ws 127.0.0.1:9100`; `GET /healthz` answers once it is listening.
use actix::{Actor, ActorContext, AsyncContext, StreamHandler};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws;
use std::time::Duration;

/// `--features system-allocator` builds it on malloc, for heap profilers, like the broker.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The broker's jemalloc options (src/main.rs), so that both hand memory back alike.
#[cfg(not(feature = "system-allocator"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 65] =
    b"background_thread:true,dirty_decay_ms:10000,muzzy_decay_ms:10000\0";

const HEARTBEAT: Duration = Duration::from_secs(15);

struct Echo;

impl Actor for Echo {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(HEARTBEAT, |_, ctx| ctx.ping(b""));
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Echo {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Text(text)) => ctx.text(text),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {}
            Err(_) => ctx.stop(),
        }
    }
}

async fn socket(req: HttpRequest, stream: web::Payload) -> actix_web::Result<HttpResponse> {
    ws::start(Echo, &req, stream)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let Some(listen) = std::env::args().nth(1) else {
        eprintln!("usage: switchboard-bare-ws ADDRESS:PORT");
        std::process::exit(2);
    };
    HttpServer::new(|| {
        App::new()
            .route("/healthz", web::get().to(HttpResponse::Ok))
            .route("/ws", web::get().to(socket))
    })
    .workers(std::thread::available_parallelism().map_or(1, |n| n.get()))
    .max_connections(1_000_000)
    .bind(listen)?
    .run()
    .await
}
