//! The dashboard and the rules against a real Prometheus (Debian's
//! `prometheus`): it scrapes an otpd on a free port while a short mixed
//! workload runs (starts, a carrier hiccup, right and wrong checks, a
//! rate-limited burst), then every PromQL expression of
//! `deploy/grafana/dashboards/otpd.json` and of the rules Prometheus loaded
//! from `deploy/prometheus/rules/otpd.yml` must be valid, and must return
//! series wherever the workload produced the metrics it reads.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    free_port, json_of, settings_with_default_limits, wrong, RedisServer, TestApp,
};

/// Metrics (or selectors) this workload does not produce: expressions on
/// them must be valid but may be empty.
const NOT_EXERCISED: [&str; 7] = [
    "otpd_delivery_receipts_total",
    "otpd_delivery_reroutes_total",
    "otpd_send_to_delivery_seconds",
    "otpd_blocked_total",
    "otpd_budget_threshold_crossed_total",
    "otpd_redis_errors_total",
    r#"status=~"5..""#,
];

struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(target: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/rules/otpd.yml");
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n  - job_name: otpd\n    static_configs: [{{targets: [{target:?}]}}]\n"
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus missing: run scripts/test, which installs it");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// An instant query: `Err` with Prometheus's error when it is invalid.
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Result<Vec<Value>, String> {
        let answer = http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = answer.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body["error"].to_string());
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Queries until `expr` returns series (ten seconds at most).
    async fn series(&self, http: &reqwest::Client, expr: &str) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let result = self.query(http, expr).await;
            match &result {
                Ok(series) if series.is_empty() && Instant::now() < deadline => {}
                Err(_) if Instant::now() < deadline => {}
                _ => return result,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every expression of the dashboard, with Grafana's variables filled in.
fn dashboard_expressions() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboards/otpd.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("json");
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let filled = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$service", ".*");
            all.push((
                format!("panel {:?}", panel["title"].as_str().unwrap_or_default()),
                filled,
            ));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(query) = variable["definition"].as_str() {
            // label_values(metric, label): the metric must have series.
            let metric = query
                .trim_start_matches("label_values(")
                .split(',')
                .next()
                .expect("metric");
            all.push((format!("variable {}", variable["name"]), metric.to_owned()));
        }
    }
    all
}

/// Every rule Prometheus loaded, as (name, expression, is an alert).
async fn rule_expressions(
    prometheus: &Prometheus,
    http: &reqwest::Client,
) -> Vec<(String, String, bool)> {
    let rules: Value = http
        .get(format!("{}/api/v1/rules", prometheus.base))
        .send()
        .await
        .expect("rules")
        .json()
        .await
        .expect("json");
    let mut all = Vec::new();
    for group in rules["data"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["type"] == "alerting";
            let name = rule["name"].as_str().expect("name").to_owned();
            assert_eq!(rule["health"], "ok", "{name}: {}", rule["lastError"]);
            all.push((
                name,
                rule["query"].as_str().expect("query").to_owned(),
                alert,
            ));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_query_works_against_real_prometheus() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings_with_default_limits(Some(&redis))).await;
    let prometheus = Prometheus::scraping(app.base.trim_start_matches("http://"));
    let http = reqwest::Client::new();
    let up = prometheus.series(&http, r#"up{job="otpd"} == 1"#).await;
    assert!(
        up.is_ok_and(|series| !series.is_empty()),
        "Prometheus never scraped otpd"
    );

    // The workload: 12 starts from one IP (the 11th and 12th over the
    // 10-per-minute limit), one carrier hiccup, 3 right and 2 wrong checks.
    app.carrier.fail_next(1);
    let mut ids = Vec::new();
    for n in 0..12 {
        let started = app.start(&format!("+8190{:04}0000", 4000 + n)).await;
        if started.status() == 201 {
            ids.push(
                json_of(started).await["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            );
        }
    }
    assert_eq!(ids.len(), 10, "two starts over the IP limit");
    for id in &ids[..3] {
        let code = app.code_for(id).await;
        app.check(id, &code).await;
    }
    for id in &ids[3..5] {
        let code = app.code_for(id).await;
        app.check(id, &wrong(&code)).await;
    }
    let checked = prometheus
        .series(&http, "sum(otpd_checks_total) >= 5")
        .await;
    assert!(
        checked.is_ok_and(|series| !series.is_empty()),
        "the checks were never scraped"
    );

    let mut expressions: Vec<(String, String, bool)> = dashboard_expressions()
        .into_iter()
        .map(|(name, expr)| (name, expr, false))
        .collect();
    expressions.extend(rule_expressions(&prometheus, &http).await);
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for (name, expr, alert) in &expressions {
        let may_be_empty =
            *alert || expr.contains("offset 1d") || NOT_EXERCISED.iter().any(|m| expr.contains(m));
        let result = if may_be_empty {
            prometheus.query(&http, expr).await
        } else {
            prometheus.series(&http, expr).await
        };
        match result {
            Err(error) => failures.push(format!("{name}: invalid: {error}\n  {expr}")),
            Ok(series) if series.is_empty() && !may_be_empty => {
                failures.push(format!("{name}: no series\n  {expr}"))
            }
            Ok(series) => checked.push(format!("{name}: {} series", series.len())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("checked against Prometheus:\n{}", checked.join("\n"));
}
