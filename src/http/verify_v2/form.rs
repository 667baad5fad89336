//! A Verify v2 request body: `application/x-www-form-urlencoded`, each
//! parameter at most once, only those the endpoint takes. Twilio documents
//! more parameters than otpd implements; those are refused by name (400
//! 60200), never ignored, and so is anything unknown.

use std::collections::BTreeMap;

use actix_web::HttpRequest;

use super::error::TwilioError;

/// The parameters of one request, by name.
pub struct Form(BTreeMap<String, String>);

impl Form {
    /// `body` as a form whose every parameter is in `supported`; the ones
    /// in `unsupported` are documented by Twilio and not implemented.
    pub fn parse(
        request: &HttpRequest,
        body: &[u8],
        supported: &[&str],
        unsupported: &[&str],
    ) -> Result<Self, TwilioError> {
        let content_type = actix_web::HttpMessage::content_type(request);
        if !body.is_empty() && content_type != "application/x-www-form-urlencoded" {
            return Err(TwilioError::invalid(
                "send Content-Type: application/x-www-form-urlencoded",
            ));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| TwilioError::invalid("the body is not a form"))?;
        let mut form = BTreeMap::new();
        for (name, value) in pairs {
            if unsupported.contains(&name.as_str()) {
                return Err(TwilioError::invalid(format!(
                    "{name} is not supported by otpd"
                )));
            }
            if !supported.contains(&name.as_str()) {
                return Err(TwilioError::invalid(format!("{name} is unknown")));
            }
            if form.insert(name.clone(), value).is_some() {
                return Err(TwilioError::invalid(format!(
                    "{name} is given more than once"
                )));
            }
        }
        Ok(Form(form))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, TwilioError> {
        self.get(name)
            .ok_or_else(|| TwilioError::invalid(format!("{name} is required")))
    }
}
