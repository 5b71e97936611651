use clap::Parser;
use switchboard::{config::Config, startup::Application};

/// Signaling frames are allocated on one thread and freed on another, which jemalloc handles
/// far better than glibc malloc (docs/benchmarks.md).
///
/// `--features system-allocator` builds with the system allocator instead, for heap profilers
/// (valgrind's massif) that see only malloc (docs/benchmarks.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at start. Freed pages go back to the system after about ten
/// seconds unused (dirty, then muzzy), and a background thread does it, so memory returns after
/// a mass disconnect even when nothing else allocates (docs/benchmarks.md).
#[cfg(not(feature = "system-allocator"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 65] =
    b"background_thread:true,dirty_decay_ms:10000,muzzy_decay_ms:10000\0";

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let config = Config::parse();
    // The turn crate logs every refused relay request as an error; off by default so that
    // anyone sending garbage to the relay can't flood the log (RUST_LOG=turn=warn brings it back).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,turn=off"))
        .init();
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("switchboard: {err}");
            std::process::exit(1);
        }
    };
    log::info!("switchboard listening on http://{}", app.address());
    app.run_until_stopped().await
}
