//! The tracing subscriber: plain lines for people or JSON for pipelines, and
//! optionally OpenTelemetry traces over OTLP/HTTP (feature `otel`,
//! `log.otlp_endpoint`). What reaches it never holds a code or a full number
//! (SEC-13): domain types print masked forms and bodies are never logged.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// The SMPP codec and client trace whole PDUs, codes included: never
/// logged, whatever the filter says (SMPP-9, SEC-13).
const PDU_LOGS_OFF: [&str; 2] = ["rusmpp=off", "rusmppc=warn"];

/// Keeps the trace exporter alive; `shutdown` flushes what is buffered.
#[must_use]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(traces) = self.traces {
            let _ = traces.shutdown();
        }
    }
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `filter`.
pub fn init(format: LogFormat, filter: &str, otlp_endpoint: &str) -> anyhow::Result<Telemetry> {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    for directive in PDU_LOGS_OFF {
        filter = filter.add_directive(directive.parse().expect("a valid directive"));
    }
    // Colours for a terminal only: escape codes in a log file or pipe are
    // noise.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = fmt::layer().with_writer(std::io::stderr).with_ansi(colours);
    let lines: Boxed = match format {
        LogFormat::Plain => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let (traces, telemetry) = traces(otlp_endpoint)?;
    let installed = tracing_subscriber::registry()
        .with(lines.and_then(traces).with_filter(filter))
        .try_init();
    if let Err(error) = installed {
        eprintln!("logging already initialised: {error}");
    }
    Ok(telemetry)
}

#[cfg(feature = "otel")]
fn traces(endpoint: &str) -> anyhow::Result<(Option<Boxed>, Telemetry)> {
    use anyhow::Context;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;

    if endpoint.is_empty() {
        return Ok((None, Telemetry { traces: None }));
    }
    use opentelemetry_otlp::WithHttpConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient::new()?)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .context("log.otlp_endpoint")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("otpd")
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let layer: Boxed = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("otpd"))
        .boxed();
    Ok((
        Some(layer),
        Telemetry {
            traces: Some(provider),
        },
    ))
}

/// OTLP/HTTP requests sent with otpd's reqwest, blocking: the batch
/// exporter sends from a thread of its own, outside any async runtime.
#[cfg(feature = "otel")]
#[derive(Debug)]
struct OtlpClient(reqwest::blocking::Client);

#[cfg(feature = "otel")]
impl OtlpClient {
    /// Built on a thread of its own: a blocking client runs a runtime, which
    /// cannot start inside otpd's.
    fn new() -> anyhow::Result<Self> {
        let built = std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the OTLP client's thread panicked"))??;
        Ok(OtlpClient(built))
    }
}

#[cfg(feature = "otel")]
#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let (parts, body) = request.into_parts();
        let answer = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let mut response = opentelemetry_http::Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            response = response.header(name, value);
        }
        Ok(response.body(answer.bytes()?)?)
    }
}

#[cfg(not(feature = "otel"))]
fn traces(endpoint: &str) -> anyhow::Result<(Option<Boxed>, Telemetry)> {
    anyhow::ensure!(
        endpoint.is_empty(),
        "log.otlp_endpoint is set but this otpd was built without the `otel` feature"
    );
    Ok((None, Telemetry {}))
}

/// The current span's OpenTelemetry trace id, when traces are exported.
pub fn trace_id() -> Option<String> {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let context = tracing::Span::current().context();
        let span = context.span();
        let span_context = span.span_context();
        span_context
            .is_valid()
            .then(|| span_context.trace_id().to_string())
    }
    #[cfg(not(feature = "otel"))]
    None
}
