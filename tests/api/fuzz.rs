//! Fuzz targets for every parser that takes outside input: phone numbers,
//! the JSON bodies, SMPP receipts (PDUs with their TLVs, and the `id:…
//! stat:…` text), carriers' receipt forms, `Idempotency-Key`, and the
//! configuration. Under `cargo test` / nextest each runs random inputs for
//! a second (bolero's random engine); for long runs see the README,
//! "Fuzzing". Each checks that nothing panics and what a parser accepts
//! keeps its promises. Inputs that once broke something stay below as
//! regression cases.

use std::collections::BTreeMap;
use std::io::Write;

use actix_web::web::BytesMut;
use bolero::check;
use otpd::api::{CheckBody, CheckByNumberBody, StartBody};
use otpd::carrier::{read_receipt, receipt_form, ReceiptState};
use otpd::config::Settings;
use otpd::domain::{Phone, Region, VerificationId};
use otpd::metrics::Surface;
use otpd::otp::Service;
use otpd::ratelimit::Client;
use rusmpp::decode::DecodeWithLength;
use rusmpp::pdus::DeliverSm;

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[test]
fn phone_numbers() {
    let regions: Vec<Region> = ["JP", "US", "GB"]
        .iter()
        .map(|r| r.parse().expect("region"))
        .collect();
    check!().for_each(|bytes: &[u8]| {
        let region = regions[usize::from(bytes.first().copied().unwrap_or(0)) % regions.len()];
        if let Ok(phone) = Phone::parse(&lossy(bytes), region) {
            let again =
                Phone::parse(phone.e164(), region).expect("an accepted number's E.164 parses");
            assert_eq!(again.e164(), phone.e164());
            assert!(
                !phone.masked().contains(&phone.e164()[1..]),
                "masked hides the number"
            );
        }
    });
}

fn demo_service() -> Service {
    let settings = Settings::dev("otpd_dev_fuzz").expect("dev settings");
    let mut services: BTreeMap<_, _> = settings.validate().expect("valid").services;
    services.pop_first().expect("the demo service").1
}

#[test]
fn json_bodies() {
    let service = demo_service();
    let id: VerificationId = "AAAAAAAAAAAAAAAAAAAAAAAA".parse().expect("an id");
    check!().for_each(|bytes: &[u8]| {
        if let Ok(body) = serde_json::from_slice::<StartBody>(bytes) {
            let _ = body.to_request(
                &service,
                Client::default(),
                Surface::Http,
                Some(&lossy(bytes)),
            );
        }
        if let Ok(body) = serde_json::from_slice::<CheckBody>(bytes) {
            if let Ok(request) = body.to_request(&service, id, Client::default(), Surface::Http) {
                let digits = request.code.digits();
                assert_eq!(digits.len(), service.code_length);
                assert!(digits.bytes().all(|b| b.is_ascii_digit()));
            }
        }
        if let Ok(body) = serde_json::from_slice::<CheckByNumberBody>(bytes) {
            let _ = body.to_request(&service, Client::default(), Surface::Http);
        }
    });
}

#[test]
fn smpp_receipts() {
    check!().for_each(|bytes: &[u8]| {
        let mut buffer = BytesMut::from(bytes);
        if let Ok((deliver, _)) = DeliverSm::decode(&mut buffer, bytes.len()) {
            if let Some((id, state)) = read_receipt(&deliver) {
                let _: ReceiptState = state;
                use otpd::carrier::ReceiptIds;
                assert!(ReceiptIds::Exact.answered_as(&id).is_some());
                for base in [ReceiptIds::DecimalOfHex, ReceiptIds::HexOfDecimal] {
                    let _ = base.answered_as(&id);
                }
            }
        }
    });
}

#[test]
fn smpp_receipt_texts() {
    check!().for_each(|bytes: &[u8]| {
        let text = lossy(bytes);
        // The text is the short message of a receipt without TLVs.
        let deliver = DeliverSm::builder()
            .short_message(bytes.to_vec().try_into().unwrap_or_default())
            .build();
        if let Some((id, _)) = read_receipt(&deliver) {
            assert!(!id.is_empty(), "{text:?}");
            assert!(text.to_ascii_lowercase().contains("id:"));
        }
    });
}

#[test]
fn receipt_forms() {
    check!().for_each(|bytes: &[u8]| {
        if let Ok(fields) = receipt_form(bytes) {
            let encoded = serde_urlencoded::to_string(&fields).expect("fields encode");
            assert_eq!(receipt_form(encoded.as_bytes()).ok(), Some(fields));
        }
    });
}

#[test]
fn idempotency_keys() {
    check!().for_each(|bytes: &[u8]| {
        if let Some(key) = otpd::http::idempotency_key(bytes) {
            assert!((1..=255).contains(&key.len()));
            assert!(key.bytes().all(|b| b.is_ascii_graphic()));
        }
    });
}

#[test]
fn configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("otpd.toml");
    check!().for_each(|bytes: &[u8]| {
        let mut file = std::fs::File::create(&path).expect("file");
        file.write_all(bytes).expect("written");
        if let Ok(settings) = Settings::load(&path) {
            let _ = settings.validate();
        }
    });
}
