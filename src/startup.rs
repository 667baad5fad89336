//! Builds the running service from settings: picks the store and carrier,
//! wires the use cases and the delivery worker, binds the listener. Nothing
//! else chooses implementations.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App as ActixApp};
use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::api::ApiKeys;
use crate::carrier::{
    Carrier, CircuitSettings, ConsoleCarrier, NullCarrier, Router, SignedEndpoint, SmppCarrier,
    TwilioCarrier, VonageCarrier, WebhookCarrier, DEV_BANNER, PRODUCTION_BANNER,
};
use crate::config::{
    self, CarrierSettings, GrpcSettings, HttpSettings, Mode, Settings, TwilioVerify,
};
use crate::delivery::Worker;
use crate::descriptors::{self, ConnectionCaps};
use crate::domain::{CarrierReceipt, Clock, Phone, ServiceName, SystemClock};
use crate::events::Publisher;
use crate::grpc::{self, VerificationServiceServer, Verifications};
use crate::http::{self, BodyLimits, ConnectionLimits, Refusals, RejectionLog};
use crate::metrics::Metrics;
use crate::otp::{Keyring, Options, Otp};
use crate::ratelimit::{Flood, TrustedProxies};
use crate::store::{MemoryStore, RedisStore, Stores};
use crate::tls::Tls;

/// What `App::build` can be given instead of what the settings name: tests
/// pass a manual clock and a recording carrier.
#[derive(Default)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
    /// Carriers tried in this order for every destination.
    pub carriers: Option<Vec<Arc<dyn Carrier>>>,
}

/// A bound, not yet running otpd: the HTTP server and the delivery worker.
pub struct App {
    server: actix_web::dev::Server,
    http_addr: SocketAddr,
    /// `/metrics` on a listener of its own, when configured.
    metrics_server: Option<(actix_web::dev::Server, SocketAddr)>,
    /// The gRPC API, when configured.
    grpc: Option<GrpcListener>,
    /// The listeners' TLS, reloaded while otpd runs.
    tls: Vec<Arc<Tls>>,
    otp: Arc<Otp>,
    worker: Arc<Worker>,
    /// Lifecycle events, when a service has an endpoint.
    publisher: Option<Arc<Publisher>>,
    router: Arc<Router>,
    /// Receipts that name only a message id, from the SMPP binds.
    receipts: mpsc::Receiver<CarrierReceipt>,
}

/// The gRPC API's bound listener, its service, limits and TLS.
struct GrpcListener {
    listener: std::net::TcpListener,
    verifications: Verifications,
    limits: GrpcSettings,
    tls: Option<Arc<Tls>>,
}

/// TLS for a listener speaking `alpn`, when `[tls]` is set.
fn listener_tls(settings: &Settings, alpn: &[u8]) -> anyhow::Result<Option<Arc<Tls>>> {
    if !settings.tls.is_on() {
        return Ok(None);
    }
    Ok(Some(Tls::load(&settings.tls, &[alpn])?))
}

fn stores(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Stores> {
    let with_events = event_endpoints(settings)?.into_keys();
    if !settings.redis.is_configured() {
        return Ok(Stores::of(Arc::new(
            MemoryStore::new().with_events(with_events),
        )));
    }
    let redis = RedisStore::connect(&settings.redis, metrics.clone()).context("redis")?;
    Ok(Stores::of(Arc::new(redis.with_events(with_events))))
}

/// The events endpoint of each service that has one.
fn event_endpoints(settings: &Settings) -> anyhow::Result<BTreeMap<ServiceName, SignedEndpoint>> {
    settings
        .services
        .iter()
        .filter_map(|(name, service)| Some((name, service.events.as_ref()?)))
        .map(|(name, events)| {
            let endpoint =
                SignedEndpoint::new(events).with_context(|| format!("services.{name}.events"))?;
            let name = name
                .parse()
                .map_err(|e| anyhow::anyhow!("services.{name}: {e}"))?;
            Ok((name, endpoint))
        })
        .collect()
}

/// Receipts waiting for otpd to find their send (SMPP).
const RECEIPT_QUEUE: usize = 10_000;
/// How long shutdown waits for the receipts read to be recorded.
const RECEIPT_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

fn carrier(
    name: &str,
    settings: &CarrierSettings,
    mode: Mode,
    receipts: &mpsc::Sender<CarrierReceipt>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn Carrier>> {
    Ok(match settings {
        CarrierSettings::Console if mode == Mode::Production => {
            tracing::warn!(
                carrier = name,
                "the console carrier prints codes to standard output and sends nothing"
            );
            Arc::new(ConsoleCarrier::stdout(PRODUCTION_BANNER))
        }
        CarrierSettings::Console => Arc::new(ConsoleCarrier::stdout(DEV_BANNER)),
        CarrierSettings::Null => Arc::new(NullCarrier::default()),
        CarrierSettings::Twilio(twilio) => Arc::new(
            TwilioCarrier::new(name, twilio)
                .map_err(|e| anyhow::anyhow!("carriers.{name}: {e}"))?,
        ),
        CarrierSettings::Vonage(vonage) => Arc::new(
            VonageCarrier::new(name, vonage)
                .map_err(|e| anyhow::anyhow!("carriers.{name}: {e}"))?,
        ),
        CarrierSettings::Smpp(smpp) => Arc::new(
            SmppCarrier::new(name, smpp, receipts.clone(), Arc::clone(clock))
                .map_err(|e| anyhow::anyhow!("carriers.{name}: {e}"))?,
        ),
        CarrierSettings::Webhook(webhook) => {
            Arc::new(WebhookCarrier::new(webhook).with_context(|| format!("carriers.{name}"))?)
        }
    })
}

/// The carriers the routes name (or the overriding ones, in order).
fn router(
    settings: &Settings,
    chosen: Option<Vec<Arc<dyn Carrier>>>,
    receipts: &mpsc::Sender<CarrierReceipt>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Router> {
    let routing = &settings.routing;
    let circuit = CircuitSettings {
        failures: routing.circuit_failures,
        cooldown: routing.circuit_cooldown,
    };
    if let Some(chosen) = chosen {
        let order: Vec<usize> = (0..chosen.len()).collect();
        let named = chosen
            .into_iter()
            .map(|carrier| (carrier.name().to_owned(), carrier))
            .collect();
        return Ok(Router::new(
            named,
            order.clone(),
            BTreeMap::new(),
            order,
            circuit,
            routing.failover_on_rejection,
            clock,
        ));
    }
    let mut used: Vec<&String> = routing
        .default
        .iter()
        .chain(routing.by_region.values().flatten())
        .chain(&routing.voice)
        .collect();
    used.sort();
    used.dedup();
    let named = used
        .iter()
        .map(|name| {
            Ok((
                (*name).clone(),
                carrier(
                    name,
                    &settings.carriers[*name],
                    settings.mode,
                    receipts,
                    &clock,
                )?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let index = |route: &Vec<String>| {
        route
            .iter()
            .filter_map(|name| used.iter().position(|u| *u == name))
            .collect()
    };
    let by_region = routing
        .by_region
        .iter()
        .map(|(region, route)| (region.clone(), index(route)))
        .collect();
    Ok(Router::new(
        named,
        index(&routing.default),
        by_region,
        index(&routing.voice),
        circuit,
        routing.failover_on_rejection,
        clock,
    ))
}

impl App {
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Overrides::default())
    }

    pub fn build_with(settings: &Settings, overrides: Overrides) -> anyhow::Result<Self> {
        let validated = settings.validate()?;
        let settings = &within_descriptors(settings);
        Phone::load_metadata();
        let metrics = Metrics::new();
        for service in validated.services.values() {
            metrics.prepare(service);
        }
        let clock: Arc<dyn Clock> = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let (receipts_in, receipts) = mpsc::channel(RECEIPT_QUEUE);
        let router = Arc::new(router(
            settings,
            overrides.carriers,
            &receipts_in,
            Arc::clone(&clock),
        )?);
        let options = Options {
            idempotency_retention: settings.idempotency.retention,
            max_queued: settings.delivery.max_queued,
            max_clock_skew: settings.redis.max_clock_skew,
            receipt_timeout: settings.delivery.receipt_timeout,
            receipt_carriers: router.giving_receipts(),
        };
        let stores = stores(settings, &metrics)?;
        let endpoints = event_endpoints(settings)?;
        let consumer = format!("replica-{}", config::random_token(6));
        let publisher = (!endpoints.is_empty()).then(|| {
            Arc::new(Publisher::new(
                Arc::clone(&stores.events),
                endpoints,
                settings.events.clone(),
                Arc::clone(&clock),
                metrics.clone(),
                consumer.clone(),
            ))
        });
        let otp = Arc::new(Otp::new(
            stores,
            Arc::clone(&clock),
            Keyring::new(&validated.secrets, &validated.index_secret),
            validated.services,
            metrics.clone(),
            options,
        ));
        let worker = Arc::new(Worker::new(
            Arc::clone(&otp),
            Arc::clone(&router),
            metrics.clone(),
            settings.delivery.clone(),
            consumer,
        ));
        let refusals = Refusals {
            metrics: metrics.clone(),
            log: Arc::new(RejectionLog::default()),
        };
        let metrics_server = metrics_server(settings, &refusals)?;
        let api_keys = Arc::new(ApiKeys::new(validated.api_keys, metrics.clone()));
        let twilio_verify = validated.twilio_verify.map(Arc::new);
        let http = &settings.http;
        let proxies = Arc::new(TrustedProxies::new(http.trusted_proxies.clone()));
        let flood = Arc::new(Flood::new(
            http.flood_per_second,
            http.flood_burst,
            http.ipv6_prefix,
        ));
        if !settings.tls.is_on() && settings.mode == Mode::Production {
            tracing::warn!(
                "no [tls]: the API listens in plaintext; terminate TLS in front of otpd (SEC-20)"
            );
        }
        let http_tls = listener_tls(settings, b"http/1.1")?;
        let mut tls: Vec<Arc<Tls>> = http_tls.iter().cloned().collect();
        let grpc = match grpc_listener(settings)? {
            Some(listener) => {
                let grpc_tls = listener_tls(settings, b"h2")?;
                tls.extend(grpc_tls.iter().cloned());
                Some(GrpcListener {
                    listener,
                    verifications: Verifications::new(
                        Arc::clone(&otp),
                        Arc::clone(&api_keys),
                        metrics.clone(),
                        Arc::clone(&proxies),
                        Arc::clone(&flood),
                    ),
                    limits: settings.grpc.clone(),
                    tls: grpc_tls,
                })
            }
            None => None,
        };
        let (server, http_addr) = http_server(
            settings,
            Arc::clone(&otp),
            (api_keys, twilio_verify),
            Arc::clone(&router),
            (proxies, flood),
            &refusals,
            http_tls,
        )?;
        Ok(App {
            tls,
            server,
            http_addr,
            metrics_server,
            grpc,
            otp,
            worker,
            publisher,
            router,
            receipts,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the gRPC API listens, if it does.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc
            .as_ref()
            .and_then(|grpc| grpc.listener.local_addr().ok())
    }

    /// Where the separate metrics listener is, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|(_, addr)| *addr)
    }

    /// The use cases this instance serves (tests watch its outbox).
    pub fn otp(&self) -> Arc<Otp> {
        Arc::clone(&self.otp)
    }

    /// Serves and delivers until `shutdown` completes, then drains the
    /// requests and sends in flight.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let App {
            server,
            metrics_server,
            grpc,
            tls,
            otp,
            worker,
            publisher,
            router,
            mut receipts,
            ..
        } = self;
        let metrics_server = metrics_server.map(|(server, _)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let (stop, stopped) = watch::channel(false);
        let (disconnect, disconnected) = watch::channel(false);
        let links: Vec<_> = router
            .carriers()
            .map(|carrier| {
                let (carrier, disconnected) = (Arc::clone(carrier), disconnected.clone());
                tokio::spawn(async move { carrier.connect(disconnected).await })
            })
            .collect();
        let (drain, draining) = tokio::sync::oneshot::channel::<()>();
        let receipts = tokio::spawn(async move {
            let record = async |receipt: CarrierReceipt| {
                if let Err(error) = otp.record_receipt(&receipt).await {
                    tracing::warn!(carrier = %receipt.carrier, error = %error, "receipt not recorded");
                }
            };
            tokio::pin!(draining);
            loop {
                tokio::select! {
                    receipt = receipts.recv() => match receipt {
                        Some(receipt) => record(receipt).await,
                        None => return,
                    },
                    _ = &mut draining => break,
                }
            }
            // The links are closed: record what they read, then stop.
            receipts.close();
            while let Some(receipt) = receipts.recv().await {
                record(receipt).await;
            }
        });
        let reloads: Vec<_> = tls
            .into_iter()
            .map(|tls| tokio::spawn(tls.watch()))
            .collect();
        let grpc = grpc.map(|grpc| {
            let mut stopping = disconnected.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stopping.changed().await;
                };
                if let Err(error) = serve_grpc(grpc, stopped).await {
                    tracing::error!(error = %error, "the gRPC API stopped");
                }
            })
        });
        let publishing = publisher.map(|publisher| tokio::spawn(publisher.run(stopped.clone())));
        let delivery = tokio::spawn(worker.run(stopped));
        let handle = server.handle();
        let served = tokio::select! {
            result = server => result,
            () = shutdown => {
                handle.stop(true).await;
                Ok(())
            }
        };
        if let Some(metrics_server) = metrics_server {
            metrics_server.stop(true).await;
        }
        // Sends in flight finish first, then the links close (SMPP unbind).
        let _ = stop.send(true);
        let _ = delivery.await;
        if let Some(publishing) = publishing {
            let _ = publishing.await;
        }
        let _ = disconnect.send(true);
        if let Some(grpc) = grpc {
            let _ = grpc.await;
        }
        for link in links {
            let _ = link.await;
        }
        let _ = drain.send(());
        if tokio::time::timeout(RECEIPT_DRAIN, receipts).await.is_err() {
            tracing::warn!("receipts still unrecorded at shutdown were dropped");
        }
        for reload in reloads {
            reload.abort();
        }
        served
    }
}

fn http_server(
    settings: &Settings,
    otp: Arc<Otp>,
    (api_keys, twilio_verify): (Arc<ApiKeys>, Option<Arc<TwilioVerify>>),
    router: Arc<Router>,
    (proxies, flood): (Arc<TrustedProxies>, Arc<Flood>),
    refusals: &Refusals,
    tls: Option<Arc<Tls>>,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let otp = web::Data::from(otp);
    let router = web::Data::from(router);
    let api_keys = web::Data::from(api_keys);
    let proxies = web::Data::from(proxies);
    let flood = web::Data::from(flood);
    let http = &settings.http;
    let (metrics, rejections) = observed(refusals);
    let bodies = body_limits(http);
    let public_metrics = http.metrics_listen.is_none();
    let listener = std::net::TcpListener::bind(http.listen)
        .with_context(|| format!("http.listen {}", http.listen))?;
    let http_addr = listener.local_addr()?;
    let limits = connection_limits(http, http.workers);
    let fields = web::Data::new(http.ratelimit_fields);
    let server = http::serve(listener, limits, tls, refusals.clone(), move || {
        ActixApp::new()
            .app_data(fields.clone())
            .app_data(rejections.clone())
            .app_data(bodies.clone())
            .app_data(otp.clone())
            .app_data(api_keys.clone())
            .app_data(router.clone())
            .app_data(metrics.clone())
            .app_data(proxies.clone())
            .app_data(flood.clone())
            .configure(http::configure(public_metrics, twilio_verify.clone()))
            .wrap(from_fn(http::ratelimit_fields))
            .wrap(from_fn(http::shed_floods))
            .wrap(Condition::new(
                twilio_verify.is_some(),
                from_fn(http::answer_as_twilio),
            ))
            .wrap(from_fn(http::observe))
    })?;
    Ok((server, http_addr))
}

/// What `observe` needs as App data.
fn observed(refusals: &Refusals) -> (web::Data<Metrics>, web::Data<RejectionLog>) {
    (
        web::Data::new(refusals.metrics.clone()),
        web::Data::from(Arc::clone(&refusals.log)),
    )
}

fn connection_limits(http: &HttpSettings, workers: usize) -> ConnectionLimits {
    ConnectionLimits {
        request_timeout: http.request_timeout,
        keep_alive: http.keep_alive,
        max_connections: http.max_connections,
        workers,
    }
}

/// `settings` with connection caps every connection of which has a file
/// descriptor (`descriptors`).
fn within_descriptors(settings: &Settings) -> Settings {
    let workers = match settings.http.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        workers => workers,
    };
    let caps = descriptors::connection_caps(
        ConnectionCaps {
            http_per_worker: settings.http.max_connections,
            grpc: settings.grpc.max_connections,
        },
        workers,
        !settings.grpc.listen.trim().is_empty(),
    );
    let mut settings = settings.clone();
    settings.http.max_connections = caps.http_per_worker;
    settings.grpc.max_connections = caps.grpc;
    settings
}

fn body_limits(http: &HttpSettings) -> web::Data<BodyLimits> {
    web::Data::new(BodyLimits {
        max_bytes: http.max_body_bytes,
        within: http.request_timeout,
    })
}

/// Binds `grpc.listen`, unless it is empty.
fn grpc_listener(settings: &Settings) -> anyhow::Result<Option<std::net::TcpListener>> {
    let listen = settings.grpc.listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    let address: SocketAddr = listen
        .parse()
        .with_context(|| format!("grpc.listen {listen:?}: use host:port"))?;
    let listener =
        std::net::TcpListener::bind(address).with_context(|| format!("grpc.listen {address}"))?;
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

/// The gRPC API, the standard health service and reflection, until `stop`.
async fn serve_grpc(
    grpc: GrpcListener,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let GrpcListener {
        listener,
        verifications,
        limits,
        tls,
    } = grpc;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    // The health service says what `/readyz` says, checked as often.
    let otp = Arc::clone(verifications.otp());
    let watch_health = async move {
        loop {
            match otp.ready().await {
                Ok(()) => {
                    health
                        .set_serving::<VerificationServiceServer<Verifications>>()
                        .await
                }
                Err(_) => {
                    health
                        .set_not_serving::<VerificationServiceServer<Verifications>>()
                        .await
                }
            }
            tokio::time::sleep(HEALTH_EVERY).await;
        }
    };
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::pb::DESCRIPTORS)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let server = tonic::transport::Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_connection_age(limits.max_connection_age)
        .max_connection_age_grace(limits.request_timeout)
        .http2_keepalive_interval(Some(HEALTH_EVERY * 15))
        .http2_keepalive_timeout(Some(limits.request_timeout))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(VerificationServiceServer::new(verifications))
        .serve_with_incoming_shutdown(
            grpc::accept_counted(
                listener,
                limits.max_connections,
                tls,
                limits.request_timeout,
            ),
            stop,
        );
    tokio::select! {
        served = server => served?,
        () = watch_health => {}
    }
    Ok(())
}

/// How often the gRPC health service asks the store whether otpd can write.
const HEALTH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The separate `/metrics` listener, when `http.metrics_listen` is set.
fn metrics_server(
    settings: &Settings,
    refusals: &Refusals,
) -> anyhow::Result<Option<(actix_web::dev::Server, SocketAddr)>> {
    let Some(listen) = settings.http.metrics_listen else {
        return Ok(None);
    };
    let (metrics, rejections) = observed(refusals);
    let bodies = body_limits(&settings.http);
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("http.metrics_listen {listen}"))?;
    let addr = listener.local_addr()?;
    let limits = connection_limits(&settings.http, 1);
    let server = http::serve(listener, limits, None, refusals.clone(), move || {
        ActixApp::new()
            .app_data(rejections.clone())
            .app_data(bodies.clone())
            .app_data(metrics.clone())
            .configure(http::metrics_only)
            .wrap(from_fn(http::observe))
    })?;
    Ok(Some((server, addr)))
}
