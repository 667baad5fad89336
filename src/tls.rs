//! TLS for the HTTP and gRPC listeners (`[tls]`, REQUIREMENTS.md SEC-20):
//! rustls with the certificate chain and key read from PEM files and read
//! again on SIGHUP, or when a file's modification time changes (looked at
//! every `tls.reload_every`), so a rotation needs no restart; a reload that
//! fails keeps the certificate in use and logs why. With
//! `tls.client_ca_file`, every client must present a certificate that CA
//! signed (mTLS), on top of its API key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// `[tls]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first; empty: no TLS.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// PEM CA certificates that sign client certificates; empty: none asked.
    pub client_ca_file: PathBuf,
    #[serde(with = "humantime_serde")]
    pub reload_every: Duration,
}

impl TlsSettings {
    pub fn is_on(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    /// The first thing wrong, as a key and a problem.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        let key_given = !self.key_file.as_os_str().is_empty();
        let ca_given = !self.client_ca_file.as_os_str().is_empty();
        match (self.is_on(), key_given) {
            (true, false) => Some(("tls.key_file", "required with tls.cert_file")),
            (false, true) => Some(("tls.cert_file", "required with tls.key_file")),
            (false, false) if ca_given => {
                Some(("tls.cert_file", "required with tls.client_ca_file"))
            }
            _ if self.reload_every.is_zero() => Some(("tls.reload_every", "must be more than 0")),
            _ => None,
        }
    }
}

/// One listener's TLS: its current configuration, replaced on reload.
pub struct Tls {
    settings: TlsSettings,
    alpn: Vec<Vec<u8>>,
    current: RwLock<(Arc<ServerConfig>, Stamps)>,
    /// SIGHUPs, caught from `load` on (before it a SIGHUP would end otpd),
    /// until `watch` takes them.
    hangups: std::sync::Mutex<Option<Hangups>>,
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

/// The files' modification times when last read.
type Stamps = Vec<Option<SystemTime>>;

impl Tls {
    /// Reads the files now (a listener with TLS does not start without
    /// them); `alpn` are the protocols the listener speaks. Within a Tokio
    /// runtime.
    pub fn load(settings: &TlsSettings, alpn: &[&[u8]]) -> anyhow::Result<Arc<Self>> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        let stamps = stamps(settings);
        let config = server_config(settings, &alpn)?;
        #[cfg(unix)]
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|error| tracing::warn!(%error, "no SIGHUP handler: TLS reloads on file changes only"))
            .ok();
        #[cfg(not(unix))]
        let hangups = None;
        Ok(Arc::new(Tls {
            settings: settings.clone(),
            alpn,
            current: RwLock::new((config, stamps)),
            hangups: std::sync::Mutex::new(hangups),
        }))
    }

    fn acceptor(&self) -> TlsAcceptor {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        TlsAcceptor::from(Arc::clone(&current.0))
    }

    /// The TLS side of `io`, if the handshake completes within `within`.
    pub async fn accept<S>(&self, io: S, within: Duration) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio::time::timeout(within, self.acceptor().accept(io))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    /// Reads the files again if `always` or if one changed.
    fn reload(&self, always: bool) {
        let stamps = stamps(&self.settings);
        let changed = {
            let current = self
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            current.1 != stamps
        };
        if !always && !changed {
            return;
        }
        match server_config(&self.settings, &self.alpn) {
            Ok(config) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = (config, stamps);
                tracing::info!(cert_file = %self.settings.cert_file.display(), "TLS certificate loaded");
            }
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "TLS certificate not reloaded: the previous one stays"
                );
            }
        }
    }

    /// Reloads on SIGHUP and when the files change, for ever.
    pub async fn watch(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.settings.reload_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hangups = self
            .hangups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        #[cfg(unix)]
        if let Some(mut hangups) = hangups {
            loop {
                tokio::select! {
                    _ = hangups.recv() => self.reload(true),
                    _ = every.tick() => self.reload(false),
                }
            }
        }
        #[cfg(not(unix))]
        let () = hangups.unwrap_or_default();
        loop {
            every.tick().await;
            self.reload(false);
        }
    }
}

fn stamps(settings: &TlsSettings) -> Stamps {
    [
        &settings.cert_file,
        &settings.key_file,
        &settings.client_ca_file,
    ]
    .iter()
    .map(|file| {
        std::fs::metadata(file)
            .and_then(|meta| meta.modified())
            .ok()
    })
    .collect()
}

fn certificates(file: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(file)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: not PEM certificates", file.display()))?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "{}: no certificate",
        file.display()
    );
    Ok(certificates)
}

fn server_config(settings: &TlsSettings, alpn: &[Vec<u8>]) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = certificates(&settings.cert_file).context("tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).with_context(|| {
        format!(
            "tls.key_file: {}: no PEM private key",
            settings.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let builder = if settings.client_ca_file.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in certificates(&settings.client_ca_file).context("tls.client_ca_file")? {
            roots.add(certificate).context("tls.client_ca_file")?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("tls.client_ca_file")?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("tls.cert_file and tls.key_file do not make a pair")?;
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}
