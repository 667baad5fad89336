//! The HTTP listeners: actix-server accepts, actix-http speaks HTTP/1.1 over
//! each connection (TLS when `[tls]` is set, the handshake within
//! `request_timeout`) wrapped in `Answering`, and an actix-web App routes.
//! Assembled here rather than by actix-web's `HttpServer`, which gives no
//! hold on the connection. Each client has `request_timeout` for its
//! headers (and `read_bodies` as long again for its body), an idle
//! connection closes after `keep_alive`, and a worker holds at most
//! `max_connections`.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, Request};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Response, Server};

use actix_http::error::DispatchError;
use actix_web::rt::net::TcpStream;
use tokio_util::either::Either;

use super::answering::{Answering, Refusals};
use crate::tls::Tls;

/// What bounds a listener's connections.
#[derive(Clone, Copy)]
pub struct ConnectionLimits {
    pub request_timeout: Duration,
    pub keep_alive: Duration,
    pub max_connections: usize,
    /// Worker threads; 0: one per core.
    pub workers: usize,
}

/// Serves the Apps `app` makes (one per worker) on `listener`.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<Arc<Tls>>,
    refusals: Refusals,
    app: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    B: MessageBody + 'static,
{
    let mut builder = Server::build()
        .disable_signals()
        .shutdown_timeout(10)
        .max_concurrent_connections(limits.max_connections);
    if limits.workers > 0 {
        builder = builder.workers(limits.workers);
    }
    let name = format!("otpd-http-{}", listener.local_addr()?);
    Ok(builder
        .listen(name, listener, move || {
            let app = app()
                .into_factory()
                .map_err(|error| error.into().error_response());
            let http = HttpService::build()
                .keep_alive(limits.keep_alive)
                .client_request_timeout(limits.request_timeout)
                .h1(map_config(app, |_| AppConfig::default()));
            let (refusals, tls) = (refusals.clone(), tls.clone());
            fn_service(move |io: TcpStream| {
                let (refusals, tls) = (refusals.clone(), tls.clone());
                async move {
                    let peer = io.peer_addr().ok();
                    let io = match tls {
                        None => Either::Left(io),
                        Some(tls) => Either::Right(
                            tls.accept(io, limits.request_timeout)
                                .await
                                .map_err(DispatchError::Io)?,
                        ),
                    };
                    Ok((Answering::new(io, refusals), peer))
                }
            })
            .and_then(http)
        })?
        .run())
}
