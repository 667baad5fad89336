//! The dev-mode carrier: writes each SMS (or call script), code included, to the console,
//! under a banner that says which mode otpd runs in (in production it is a
//! stand-in that sends nothing, and says so).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Accepted, Call, Carrier, Message, SendError, Sms};

pub struct ConsoleCarrier {
    out: Mutex<Box<dyn Write + Send>>,
    sent: AtomicU64,
    banner: &'static str,
}

/// The banner of each SMS in dev mode.
pub const DEV_BANNER: &str = "[dev mode]";
/// The banner in production mode, where nothing printed reaches a phone.
pub const PRODUCTION_BANNER: &str = "[console carrier: printed here, not sent]";

impl ConsoleCarrier {
    pub fn stdout(banner: &'static str) -> Self {
        Self::new(Box::new(std::io::stdout()), banner)
    }

    pub fn new(out: Box<dyn Write + Send>, banner: &'static str) -> Self {
        ConsoleCarrier {
            out: Mutex::new(out),
            sent: AtomicU64::new(0),
            banner,
        }
    }
}

#[async_trait]
impl Carrier for ConsoleCarrier {
    fn name(&self) -> &str {
        "console"
    }

    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError> {
        self.print("SMS", sms, sms.body.text())
    }

    async fn call(&self, call: &Call) -> Result<Accepted, SendError> {
        self.print("call", call, &call.body.text())
    }
}

impl ConsoleCarrier {
    /// Writes one message (`kind` SMS or call) and what it says.
    fn print<B>(
        &self,
        kind: &str,
        message: &Message<B>,
        says: &str,
    ) -> Result<Accepted, SendError> {
        let number = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let written = writeln!(
            out,
            "\n┌─ {} {kind} #{number} to {} ({} / {})\n│ {}\n└─",
            self.banner,
            message.to.masked(),
            message.service,
            message.verification,
            says.replace('\n', "\n│ ")
        )
        .and_then(|()| out.flush());
        written.map_err(|error| SendError::Temporary(Box::new(error)))?;
        Ok(Accepted {
            message_id: format!("console-{number}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::domain::{Code, Phone, VerificationId};
    use crate::sms::Template;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn prints_the_body_and_masks_the_number() {
        let buffer = Buffer::default();
        let carrier = ConsoleCarrier::new(Box::new(buffer.clone()), PRODUCTION_BANNER);
        let sms = Sms {
            to: Phone::parse("+819012345678", "JP".parse().expect("JP")).expect("phone"),
            body: Template::parse("code {code}").expect("template").render(
                &Code::parse("424242", 6).expect("code"),
                "Demo",
                5,
            ),
            service: "demo".parse().expect("service"),
            verification: VerificationId::generate([0, 0]),
            send: 1,
            step: 0,
            valid_for: std::time::Duration::from_secs(300),
        };
        let accepted = carrier.send(&sms).await.expect("sent");
        assert_eq!(accepted.message_id, "console-1");
        let printed = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
        assert!(printed.contains("code 424242"), "{printed}");
        assert!(
            printed.contains("[console carrier: printed here, not sent] SMS #1")
                && !printed.contains("dev mode"),
            "the banner says the mode: {printed}"
        );
        assert!(
            printed.contains("+81 90-****-5678") && !printed.contains("9012345678"),
            "{printed}"
        );
    }
}
