//! Builds the running service from settings: picks the store and carrier,
//! wires the use cases, binds the listener. Nothing else chooses
//! implementations.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App as ActixApp, HttpServer};
use anyhow::Context;

use crate::carrier::{Carrier, ConsoleCarrier};
use crate::config::{CarrierKind, Mode, Settings};
use crate::domain::Phone;
use crate::http::{self, ApiKeys, Flood};
use crate::metrics::Metrics;
use crate::otp::{Clock, Keyring, Otp, SystemClock};
use crate::ratelimit::TrustedProxies;
use crate::store::{MemoryStore, RedisStore, Store};

/// What `App::build` can be given instead of what the settings name: tests
/// pass a manual clock and a recording carrier.
#[derive(Default)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
    pub carrier: Option<Arc<dyn Carrier>>,
}

/// A bound, not yet running otpd.
pub struct App {
    server: actix_web::dev::Server,
    http_addr: SocketAddr,
}

impl App {
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Overrides::default())
    }

    pub fn build_with(settings: &Settings, overrides: Overrides) -> anyhow::Result<Self> {
        let validated = settings.validate()?;
        Phone::load_metadata();
        let store: Arc<dyn Store> = if settings.redis.url.is_empty() {
            Arc::new(MemoryStore::new())
        } else {
            Arc::new(RedisStore::connect(&settings.redis).context("redis.url")?)
        };
        let carrier: Arc<dyn Carrier> =
            overrides
                .carrier
                .unwrap_or_else(|| match settings.carrier.kind {
                    CarrierKind::Console => Arc::new(ConsoleCarrier::stdout()),
                });
        if settings.mode == Mode::Production && carrier.name() == "console" {
            tracing::warn!(
                "the console carrier prints codes to standard output; configure a real carrier"
            );
        }
        let metrics = Metrics::new();
        let otp = web::Data::new(Otp::new(
            store,
            carrier,
            overrides.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            Keyring::new(&validated.secrets),
            validated.services,
            metrics.clone(),
            settings.idempotency.retention,
        ));
        let api_keys = web::Data::new(ApiKeys::new(validated.api_keys));
        let proxies = web::Data::new(TrustedProxies::new(settings.http.trusted_proxies.clone()));
        let http_settings = &settings.http;
        let flood = web::Data::new(Flood::new(
            http_settings.flood_per_second,
            http_settings.flood_burst,
            http_settings.ipv6_prefix,
        ));
        let metrics = web::Data::new(metrics);
        let max_body = settings.http.max_body_bytes;
        let mut server = HttpServer::new(move || {
            ActixApp::new()
                .app_data(otp.clone())
                .app_data(api_keys.clone())
                .app_data(metrics.clone())
                .app_data(proxies.clone())
                .app_data(flood.clone())
                .configure(http::configure(max_body))
                .wrap(from_fn(http::shed_floods))
                .wrap(from_fn(http::observe))
        })
        .disable_signals()
        .shutdown_timeout(10);
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        let server = server
            .bind(settings.http.listen)
            .with_context(|| format!("http.listen {}", settings.http.listen))?;
        let http_addr = server.addrs()[0];
        Ok(App {
            server: server.run(),
            http_addr,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = self.server;
        tokio::select! {
            result = server => result,
            () = shutdown => {
                handle.stop(true).await;
                Ok(())
            }
        }
    }
}
