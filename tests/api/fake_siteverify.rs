//! A local server that answers like the attestation providers' documented
//! verify APIs: Cloudflare Turnstile's and Google reCAPTCHA's siteverify
//! (a form with `secret`, `response`, `remoteip`), reCAPTCHA Enterprise's
//! `projects/{project}/assessments?key=` (a JSON event), and a generic
//! verifier (JSON with a bearer secret, siteverify's answer). Tokens are
//! issued by the test as a widget would hand them out; each can be
//! redeemed once, and may be expired, from another site or action, low
//! scoring, or slow to answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

pub const SECRET: &str = "0x4AAAAAAAtest-secret";
pub const API_KEY: &str = "AIzaSy-test-key";
pub const PROJECT: &str = "otpd-test";

/// What a widget saw when it handed out a token.
#[derive(Clone, Debug)]
pub struct Solved {
    pub hostname: &'static str,
    pub action: &'static str,
    pub score: f64,
    pub expired: bool,
    /// The provider takes this long to answer.
    pub delay: Duration,
}

impl Default for Solved {
    fn default() -> Self {
        Solved {
            hostname: "login.example.com",
            action: "login",
            score: 0.9,
            expired: false,
            delay: Duration::ZERO,
        }
    }
}

/// One verify call, as the provider received it.
#[derive(Clone, Debug)]
pub struct Asked {
    pub path: String,
    pub token: String,
    pub remote_ip: Option<String>,
}

#[derive(Clone, Default)]
pub struct FakeSiteverify {
    tokens: Arc<Mutex<BTreeMap<String, Solved>>>,
    redeemed: Arc<Mutex<Vec<String>>>,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl FakeSiteverify {
    /// Serves on a free port; returns the base URL.
    pub fn start(&self) -> String {
        crate::fake_provider::serve_posts(self.clone(), answer)
    }

    /// A token the provider will vouch for as `solved` says.
    pub fn issue(&self, token: &str, solved: Solved) {
        self.tokens
            .lock()
            .expect("tokens")
            .insert(token.to_owned(), solved);
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().expect("asked").clone()
    }
}

/// The token's fate: `Ok` with what was solved, or the error code.
enum Fate {
    Good(Solved),
    Bad(&'static str),
}

impl FakeSiteverify {
    async fn redeem(&self, token: &str) -> Fate {
        let solved = self.tokens.lock().expect("tokens").get(token).cloned();
        let Some(solved) = solved else {
            return Fate::Bad("invalid-input-response");
        };
        tokio::time::sleep(solved.delay).await;
        let mut redeemed = self.redeemed.lock().expect("redeemed");
        if solved.expired || redeemed.iter().any(|t| t == token) {
            return Fate::Bad("timeout-or-duplicate");
        }
        redeemed.push(token.to_owned());
        Fate::Good(solved)
    }
}

async fn answer(
    request: HttpRequest,
    body: web::Bytes,
    fake: web::Data<FakeSiteverify>,
) -> HttpResponse {
    let path = request.path().to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let (secret, token, remote_ip) = if path.ends_with("/assessments") {
        let query: BTreeMap<String, String> =
            serde_urlencoded::from_str(request.query_string()).expect("a query");
        let event: Value = serde_json::from_slice(&body).expect("JSON");
        let event = &event["event"];
        if !path.contains(&format!("/projects/{PROJECT}/")) || event["siteKey"].as_str().is_none() {
            return HttpResponse::BadRequest()
                .json(json!({"error": {"code": 400, "status": "INVALID_ARGUMENT"}}));
        }
        (
            query.get("key").cloned(),
            event["token"].as_str().unwrap_or_default().to_owned(),
            event["userIpAddress"].as_str().map(str::to_owned),
        )
    } else if path == "/verify" {
        let event: Value = serde_json::from_slice(&body).expect("JSON");
        (
            header("authorization").and_then(|h| h.strip_prefix("Bearer ").map(str::to_owned)),
            event["token"].as_str().unwrap_or_default().to_owned(),
            event["remoteip"].as_str().map(str::to_owned),
        )
    } else {
        let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(&body).expect("a form");
        (
            form.get("secret").cloned(),
            form.get("response").cloned().unwrap_or_default(),
            form.get("remoteip").cloned(),
        )
    };
    fake.asked.lock().expect("asked").push(Asked {
        path: path.clone(),
        token: token.clone(),
        remote_ip,
    });
    let enterprise = path.ends_with("/assessments");
    let right_secret = secret.as_deref() == Some(if enterprise { API_KEY } else { SECRET });
    if !right_secret {
        return if enterprise {
            HttpResponse::Forbidden()
                .json(json!({"error": {"code": 403, "status": "PERMISSION_DENIED"}}))
        } else {
            HttpResponse::Ok()
                .json(json!({"success": false, "error-codes": ["invalid-input-secret"]}))
        };
    }
    let fate = fake.redeem(&token).await;
    if enterprise {
        let (valid, reason, solved) = match fate {
            Fate::Good(solved) => (true, "INVALID_REASON_UNSPECIFIED", solved),
            Fate::Bad("timeout-or-duplicate") => (false, "EXPIRED", Solved::default()),
            Fate::Bad(_) => (false, "MALFORMED", Solved::default()),
        };
        return HttpResponse::Ok().json(json!({
            "name": format!("projects/{PROJECT}/assessments/1"),
            "riskAnalysis": { "score": if valid { solved.score } else { 0.0 }, "reasons": [] },
            "tokenProperties": {
                "valid": valid, "invalidReason": reason,
                "hostname": if valid { solved.hostname } else { "" },
                "action": if valid { solved.action } else { "" },
                "createTime": "2026-12-04T00:00:00Z"
            }
        }));
    }
    match fate {
        Fate::Good(solved) => {
            let mut answer = json!({
                "success": true, "challenge_ts": "2026-12-04T00:00:00Z",
                "hostname": solved.hostname, "action": solved.action, "error-codes": [],
            });
            if path.starts_with("/recaptcha") {
                answer["score"] = json!(solved.score);
            }
            HttpResponse::Ok().json(answer)
        }
        Fate::Bad(code) => {
            HttpResponse::Ok().json(json!({"success": false, "error-codes": [code]}))
        }
    }
}
