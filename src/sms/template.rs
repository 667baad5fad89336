//! Message templates with `{code}`, `{service}` and `{minutes}`.

use std::fmt;

use zeroize::Zeroizing;

use super::autofill::{self, AppHash, Origin};
use crate::domain::Code;

/// A template known to hold `{code}` exactly once and no other placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("the template must contain {{code}} exactly once")]
    Code,
    #[error("unknown placeholder {0}; use {{code}}, {{service}} or {{minutes}}")]
    Unknown(String),
}

/// A rendered SMS body. It holds the code, so `Debug` hides it and its
/// memory is wiped on drop.
pub struct Body(Zeroizing<String>);

impl Body {
    pub fn text(&self) -> &str {
        &self.0
    }

    /// With the autofill lines appended (see `autofill::append`).
    pub fn with_autofill(
        mut self,
        code: &Code,
        app_hash: Option<&AppHash>,
        origin: Option<&Origin>,
    ) -> Body {
        autofill::append(&mut self.0, code.digits(), app_hash, origin);
        self
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Body([redacted])")
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut rest = text;
        let mut codes = 0;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|at| open + at + 1)
                .unwrap_or(rest.len());
            match &rest[open..close] {
                "{code}" => codes += 1,
                "{service}" | "{minutes}" => {}
                other => return Err(TemplateError::Unknown(other.to_owned())),
            }
            rest = &rest[close..];
        }
        if codes != 1 {
            return Err(TemplateError::Code);
        }
        Ok(Template(text.to_owned()))
    }

    pub fn render(&self, code: &Code, service: &str, minutes: u64) -> Body {
        let text = self
            .0
            .replace("{service}", service)
            .replace("{minutes}", &minutes.to_string())
            .replace("{code}", code.digits());
        Body(Zeroizing::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_placeholder() {
        let template = Template::parse("{service}: {code} ({minutes} min)").expect("valid");
        let body = template.render(&Code::parse("012345", 6).expect("code"), "Demo", 5);
        assert_eq!(body.text(), "Demo: 012345 (5 min)");
        assert_eq!(format!("{body:?}"), "Body([redacted])");
    }

    #[test]
    fn refuses_templates_without_exactly_one_code_or_with_unknown_placeholders() {
        assert_eq!(Template::parse("no code here"), Err(TemplateError::Code));
        assert_eq!(Template::parse("{code} {code}"), Err(TemplateError::Code));
        assert_eq!(
            Template::parse("{code} {name}"),
            Err(TemplateError::Unknown("{name}".into()))
        );
    }
}
