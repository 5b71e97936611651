use clap::Parser;
use switchboard::{config::Config, startup::Application};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let config = Config::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
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
