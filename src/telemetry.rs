//! The tracing subscriber: plain lines for people or JSON for pipelines.
//! What reaches it never holds a code or a full number (SEC-13): domain
//! types print masked forms and bodies are never logged.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// The SMPP codec and client trace whole PDUs, codes included: never
/// logged, whatever the filter says (SMPP-9, SEC-13).
const PDU_LOGS_OFF: [&str; 2] = ["rusmpp=off", "rusmppc=warn"];

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `filter`.
pub fn init(format: LogFormat, filter: &str) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    for directive in PDU_LOGS_OFF {
        filter = filter.add_directive(directive.parse().expect("a valid directive"));
    }
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    if let Err(error) = installed {
        eprintln!("logging already initialised: {error}");
    }
}
