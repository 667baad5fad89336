"""Writes otpd_test.yml: for every alert of rules/otpd.yml, one case where it
fires and one where it does not, on synthetic series. The expected
annotations are the rules' own templates with the labels filled in, so the
file stays in step with the rules; `promtool test rules` is the judge.
Run: python3 deploy/prometheus/tests/generate.py; with --check it only
says whether the committed file is current (scripts/test runs that)."""

import pathlib
import re
import sys

import yaml

HERE = pathlib.Path(__file__).parent
RULES = yaml.safe_load((HERE.parent / "rules" / "otpd.yml").read_text())
ALERTS = {rule["alert"]: rule for group in RULES["groups"] for rule in group["rules"] if "alert" in rule}

J = 'job="otpd"'

# alert: (labels of the alert, eval time, series that fire it, series that do not)
CASES = {
    "OtpdHighErrorRatio": (
        {"job": "otpd"}, "15m",
        [(f'otpd_http_requests_total{{{J},route="start",status="500"}}', "0+10x20"),
         (f'otpd_http_requests_total{{{J},route="start",status="201"}}', "0+90x20")],
        [(f'otpd_http_requests_total{{{J},route="start",status="500"}}', "0+1x20"),
         (f'otpd_http_requests_total{{{J},route="start",status="201"}}', "0+99x20")],
    ),
    "OtpdHighLatency": (
        {"job": "otpd", "route": "check"}, "20m",
        [(f'otpd_http_request_duration_seconds_bucket{{{J},route="check",le="0.5"}}', "0+10x30"),
         (f'otpd_http_request_duration_seconds_bucket{{{J},route="check",le="1"}}', "0+20x30"),
         (f'otpd_http_request_duration_seconds_bucket{{{J},route="check",le="+Inf"}}', "0+100x30")],
        [(f'otpd_http_request_duration_seconds_bucket{{{J},route="check",le="0.5"}}', "0+100x30"),
         (f'otpd_http_request_duration_seconds_bucket{{{J},route="check",le="+Inf"}}', "0+100x30")],
    ),
    "OtpdRedisUnavailable": (
        {"job": "otpd", "instance": "otpd-1:9464"}, "10m",
        [(f'otpd_redis_errors_total{{{J},instance="otpd-1:9464",operation="limit"}}', "0+60x15"),
         (f'otpd_redis_duration_seconds_count{{{J},instance="otpd-1:9464",operation="limit"}}', "0+60x15")],
        [(f'otpd_redis_errors_total{{{J},instance="otpd-1:9464",operation="limit"}}', "0+1x15"),
         (f'otpd_redis_duration_seconds_count{{{J},instance="otpd-1:9464",operation="limit"}}', "0+60x15")],
    ),
    "OtpdCarrierErrors": (
        {"job": "otpd", "carrier": "twilio"}, "20m",
        [(f'otpd_sends_total{{{J},carrier="twilio",country="81",outcome="temporary",service="demo"}}', "0+30x30"),
         (f'otpd_sends_total{{{J},carrier="twilio",country="81",outcome="accepted",service="demo"}}', "0+70x30")],
        [(f'otpd_sends_total{{{J},carrier="twilio",country="81",outcome="temporary",service="demo"}}', "0+5x30"),
         (f'otpd_sends_total{{{J},carrier="twilio",country="81",outcome="accepted",service="demo"}}', "0+95x30")],
    ),
    "OtpdCarrierCircuitOpen": (
        {"job": "otpd", "carrier": "docomo"}, "10m",
        [(f'otpd_carrier_circuit_open{{{J},instance="otpd-1:9464",carrier="docomo"}}', "1x15")],
        [(f'otpd_carrier_circuit_open{{{J},instance="otpd-1:9464",carrier="docomo"}}', "1 1 0x13")],
    ),
    "OtpdDeliveryRateLow": (
        {"job": "otpd", "carrier": "docomo"}, "50m",
        [(f'otpd_delivery_receipts_total{{{J},carrier="docomo",status="delivered"}}', "0+80x60"),
         (f'otpd_delivery_receipts_total{{{J},carrier="docomo",status="undelivered"}}', "0+20x60")],
        [(f'otpd_delivery_receipts_total{{{J},carrier="docomo",status="delivered"}}', "0+97x60"),
         (f'otpd_delivery_receipts_total{{{J},carrier="docomo",status="undelivered"}}', "0+3x60")],
    ),
    "OtpdOutboxStale": (
        {"job": "otpd"}, "10m",
        [(f'otpd_outbox_oldest_age_seconds{{{J},instance="otpd-1:9464"}}', "90x15")],
        [(f'otpd_outbox_oldest_age_seconds{{{J},instance="otpd-1:9464"}}', "5x15")],
    ),
    "OtpdEventsFailing": (
        {"job": "otpd", "service": "demo"}, "25m",
        [(f'otpd_events_total{{{J},service="demo",type="sent",outcome="retried"}}', "0+5x30"),
         (f'otpd_events_total{{{J},service="demo",type="sent",outcome="delivered"}}', "0x30")],
        [(f'otpd_events_total{{{J},service="demo",type="sent",outcome="retried"}}', "0+5x30"),
         (f'otpd_events_total{{{J},service="demo",type="sent",outcome="delivered"}}', "0+50x30")],
    ),
    "OtpdEventsDeadLettered": (
        {"job": "otpd", "service": "demo"}, "10m",
        [(f'otpd_events_total{{{J},service="demo",type="sent",outcome="dead_lettered"}}', "0+1x15")],
        [(f'otpd_events_total{{{J},service="demo",type="sent",outcome="dead_lettered"}}', "3x15")],
    ),
    "OtpdClockSkew": (
        {"job": "otpd", "instance": "otpd-1:9464"}, "10m",
        [(f'otpd_clock_skew_seconds{{{J},instance="otpd-1:9464"}}', "-0.8x15")],
        [(f'otpd_clock_skew_seconds{{{J},instance="otpd-1:9464"}}', "0.01x15")],
    ),
    # A day of 1 send/min to +95 with half approved, then 10 sends/min with
    # almost none approved: pumping. Against: the same surge, approved.
    "OtpdPumpingSuspected": (
        {"job": "otpd", "country": "95"}, "1560m",
        [(f'otpd_sends_total{{{J},carrier="twilio",country="95",outcome="accepted",service="demo"}}', "0+1x1440 1440+10x180"),
         (f'otpd_approvals_total{{{J},country="95",service="demo"}}', "0+0.5x1440 720+0.1x180")],
        [(f'otpd_sends_total{{{J},carrier="twilio",country="95",outcome="accepted",service="demo"}}', "0+1x1440 1440+10x180"),
         (f'otpd_approvals_total{{{J},country="95",service="demo"}}', "0+0.5x1440 720+8x180")],
    ),
    "OtpdRateLimitSurge": (
        {"job": "otpd", "service": "demo", "scope": "ip"}, "20m",
        [(f'otpd_rate_limited_total{{{J},service="demo",scope="ip",mode="enforce"}}', "0+120x30")],
        [(f'otpd_rate_limited_total{{{J},service="demo",scope="ip",mode="enforce"}}', "0+30x30"),
         (f'otpd_rate_limited_total{{{J},service="demo",scope="ip",mode="monitor"}}', "0+600x30")],
    ),
    "OtpdUnauthorizedSurge": (
        {"job": "otpd", "api_key": "web"}, "15m",
        [(f'otpd_http_unauthorized_total{{{J},instance="otpd-1:9464",api_key="web"}}', "0+60x20"),
         (f'otpd_http_unauthorized_total{{{J},instance="otpd-2:9464",api_key="web"}}', "0+30x20")],
        [(f'otpd_http_unauthorized_total{{{J},instance="otpd-1:9464",api_key="web"}}', "0+6x20")],
    ),
}

# Incidents replayed as otpd reported them: (alert, labels, eval time, series).
# A primary demoted to a read-only replica (tests/api/failover.rs): every
# outbox read (about one a second) and readiness probe is refused with
# READONLY, and no request gets as far as a script.
INCIDENTS = {
    # The textbook pumping run: 2 SMS/s for three hours to a country code
    # nobody verifies and nobody sent to the day before (ABU-6). No
    # approval series exists, nor any series a day back.
    "Pumping to a new destination with no approval": (
        "OtpdPumpingSuspected", {"job": "otpd", "country": "999"}, "180m",
        [(f'otpd_sends_total{{{J},carrier="twilio",country="999",outcome="accepted",service="demo"}}', "0+120x180")],
    ),
    # The same, where the destination had traffic yesterday but no code sent
    # to it was ever approved (its approval counter still at zero).
    "Pumping to a destination with zero approvals": (
        "OtpdPumpingSuspected", {"job": "otpd", "country": "998"}, "1620m",
        [(f'otpd_sends_total{{{J},carrier="twilio",country="998",outcome="accepted",service="demo"}}', "0+1x1440 1440+120x180"),
         (f'otpd_approvals_total{{{J},country="998",service="demo"}}', "0x1620")],
    ),
    "OtpdRedisUnavailable on a read-only replica": (
        "OtpdRedisUnavailable", {"job": "otpd", "instance": "otpd-1:9464"}, "10m",
        [(f'otpd_redis_errors_total{{{J},instance="otpd-1:9464",operation="read_outbox"}}', "0+55x15"),
         (f'otpd_redis_duration_seconds_count{{{J},instance="otpd-1:9464",operation="read_outbox"}}', "0+55x15"),
         (f'otpd_redis_errors_total{{{J},instance="otpd-1:9464",operation="ready"}}', "0+6x15"),
         (f'otpd_redis_duration_seconds_count{{{J},instance="otpd-1:9464",operation="ready"}}', "0+6x15")],
    ),
}


def fill(template, labels):
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def expected_alert(name, labels):
    rule = ALERTS[name]
    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {key: fill(value, labels) for key, value in rule["annotations"].items()},
    }


def main():
    assert set(CASES) == set(ALERTS), f"cases for {set(ALERTS) ^ set(CASES)}"
    tests = []
    for name, (labels, at, firing, quiet) in CASES.items():
        expected = expected_alert(name, labels)
        for series, alerts in ((firing, [expected]), (quiet, [])):
            tests.append({
                "name": f"{name} {'fires' if alerts else 'stays quiet'}",
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": alerts}],
            })
    for title, (name, labels, at, series) in INCIDENTS.items():
        tests.append({
            "name": f"{title}: {name} fires",
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": [expected_alert(name, labels)]}],
        })
    header = "# Generated by generate.py from ../rules/otpd.yml: edit that, then regenerate.\n"
    body = yaml.safe_dump({"rule_files": ["../rules/otpd.yml"], "evaluation_interval": "1m", "tests": tests},
                          sort_keys=False, allow_unicode=True, width=1000)
    target = HERE / "otpd_test.yml"
    if "--check" in sys.argv:
        if target.read_text() != header + body:
            sys.exit(f"{target} is stale: run python3 {__file__}")
        return
    target.write_text(header + body)


main()
