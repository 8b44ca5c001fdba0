//! Building and running the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::config::{JobsConfig, ServeConfig};
use crate::graphql::build_schema;
use crate::http::{AppState, router};
use crate::jobs::{Queue, worker::Workers};
use crate::{db, telemetry};

/// A server bound to its port, its database migrated, ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    jobs: JobsConfig,
}

impl Application {
    pub async fn build(config: ServeConfig, auth: Authenticator) -> anyhow::Result<Self> {
        let db = db::connect(&config.database)
            .await
            .context("cannot connect to the database")?;
        db::migrate(&db)
            .await
            .context("cannot apply the database migrations")?;
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        let state = AppState {
            db,
            schema: build_schema(&config.limits),
            auth: Arc::new(auth),
            http: Arc::new(config.http),
            metrics: telemetry::metrics_handle(),
            queue: Queue::new(config.jobs.job_chunk),
            limits: config.limits,
            scim: Arc::new(config.scim),
        };
        let router = router(state.clone())?;
        Ok(Self {
            listener,
            router,
            state,
            jobs: config.jobs,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.state.db
    }

    /// Serves, and runs jobs, until Ctrl-C or SIGTERM; then finishes the requests in flight
    /// and lets the workers stop after their current chunk.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let workers = Workers::start(
            self.state.db.clone(),
            self.state.queue.clone(),
            self.jobs.clone(),
        );
        let metrics = self.state.metrics.clone();
        let http = self.state.http.clone();
        // Histograms are buffered until drained; drain them even when nobody scrapes.
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        });
        crate::http::serve::serve(self.listener, self.router, &http, shutdown_signal()).await;
        upkeep.abort();
        workers.shutdown().await;
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
