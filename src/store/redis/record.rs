//! A verification as a Redis hash: the field names (`lua/common.lua`
//! documents them), its encoding for `HSET`, and the decoding of script
//! answers that carry it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use redis::Value;

use crate::domain::{Channel, Status, Timestamp, VerificationId};
use crate::sms::AppHash;
use crate::store::{Delivery, Digest, Error, NumberKey, Record, Reroute};

/// Decodes `{outcome, field, value, …}` for the record `id`.
pub(super) fn outcome(
    id: &VerificationId,
    reply: Value,
) -> Result<(String, Option<Record>), Error> {
    let mut items = match reply {
        Value::Array(items) => items.into_iter(),
        other => return Err(Error::Corrupt(format!("unexpected reply {other:?}"))),
    };
    let outcome: String = items.next().map(text).transpose()?.unwrap_or_default();
    let fields: Vec<Value> = items.collect();
    let record = if fields.is_empty() {
        None
    } else {
        Some(decode(id, fields)?)
    };
    Ok((outcome, record))
}

pub(super) fn bytes(value: Value) -> Result<Vec<u8>, Error> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(text) => Ok(text.into_bytes()),
        Value::Int(number) => Ok(number.to_string().into_bytes()),
        other => Err(Error::Corrupt(format!("expected a string, got {other:?}"))),
    }
}

pub(super) fn text(value: Value) -> Result<String, Error> {
    String::from_utf8(bytes(value)?).map_err(|_| Error::Corrupt("text is not UTF-8".into()))
}

/// The `nk` field: the number key, base64url.
pub(super) fn number_key(field: Vec<u8>) -> Result<NumberKey, Error> {
    URL_SAFE_NO_PAD
        .decode(field)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .map(NumberKey)
        .ok_or_else(|| Error::Corrupt("field nk unreadable".into()))
}

pub(super) fn digest(bytes: Vec<u8>) -> Result<Digest, Error> {
    bytes
        .try_into()
        .map_err(|_| Error::Corrupt("a digest is not 32 bytes".into()))
}

fn parsed<T: std::str::FromStr>(field: &str, value: Option<Vec<u8>>) -> Result<T, Error> {
    let raw = value.ok_or_else(|| Error::Corrupt(format!("field {field} missing")))?;
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Corrupt(format!("field {field} unreadable")))
}

/// The record from its hash fields (see `lua/common.lua` for the names).
pub(super) fn decode(id: &VerificationId, fields: Vec<Value>) -> Result<Record, Error> {
    let mut map = std::collections::HashMap::new();
    let mut pairs = fields.into_iter();
    while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
        map.insert(text(name)?, bytes(value)?);
    }
    let mut take = |name: &str| map.remove(name);
    let binding = take("b")
        .filter(|b| !b.is_empty())
        .map(digest)
        .transpose()?;
    Ok(Record {
        id: *id,
        service: parsed("sv", take("sv"))?,
        status: parsed::<Status>("s", take("s"))?,
        masked_to: parsed("mt", take("mt"))?,
        // Records from before voice have no channel: SMS.
        channel: take("ch").map_or(Ok(Channel::Sms), |ch| parsed("ch", Some(ch)))?,
        sealed_to: take("st").ok_or_else(|| Error::Corrupt("field st missing".into()))?,
        locale: parsed("lc", take("lc"))?,
        created_at: Timestamp::from_millis(parsed("c", take("c"))?),
        expires_at: Timestamp::from_millis(parsed("e", take("e"))?),
        resend_after: Timestamp::from_millis(parsed("r", take("r"))?),
        other_resend_after: take("ro")
            .filter(|at| !at.is_empty())
            .map(|at| parsed("ro", Some(at)).map(Timestamp::from_millis))
            .transpose()?,
        sends: parsed("n", take("n"))?,
        attempts_left: parsed("a", take("a"))?,
        key_id: parsed("k", take("k"))?,
        code_digest: digest(take("d").ok_or_else(|| Error::Corrupt("field d missing".into()))?)?,
        binding_digest: binding,
        number: number_key(take("nk").unwrap_or_default())?,
        country_code: parsed("cc", take("cc"))?,
        country: take("co")
            .map(|co| {
                String::from_utf8(co).map_err(|_| Error::Corrupt("field co unreadable".into()))
            })
            .transpose()?
            .unwrap_or_default(),
        app_hash: take("ah").and_then(|hash| AppHash::parse(std::str::from_utf8(&hash).ok()?).ok()),
        display_name: take("dn").map(|dn| parsed("dn", Some(dn))).transpose()?,
        fallback_steps: take("fs").map_or(Ok(0), |fs| parsed("fs", Some(fs)))?,
        delivery: Delivery {
            status: parsed("ds", take("ds"))?,
            carrier: take("dc")
                .filter(|c| !c.is_empty())
                .and_then(|c| String::from_utf8(c).ok()),
            message_id: take("dm")
                .filter(|m| !m.is_empty())
                .and_then(|m| String::from_utf8(m).ok()),
            sent_at: take("da")
                .and_then(|at| std::str::from_utf8(&at).ok()?.parse().ok())
                .map(Timestamp::from_millis),
            rerouted: match (take("rf"), take("rw")) {
                (Some(from), Some(reason)) if !from.is_empty() => Some(Reroute {
                    from: String::from_utf8(from)
                        .map_err(|_| Error::Corrupt("field rf unreadable".into()))?,
                    reason: parsed("rw", Some(reason))?,
                }),
                _ => None,
            },
        },
    })
}

/// The fields a record has only when they say something (an SMS channel,
/// no switch of channel, no re-route, the service's own name): absent,
/// they cost no memory.
fn optional_fields(record: &Record) -> Vec<(&'static str, Vec<u8>)> {
    let mut fields = Vec::new();
    if record.channel != Channel::Sms {
        fields.push(("ch", record.channel.as_str().into()));
    }
    if let Some(at) = record.other_resend_after {
        fields.push(("ro", at.millis().to_string().into_bytes()));
    }
    if let Some(reroute) = &record.delivery.rerouted {
        fields.push(("rf", reroute.from.clone().into_bytes()));
        fields.push(("rw", reroute.reason.as_str().into()));
    }
    if record.fallback_steps > 0 {
        fields.push(("fs", record.fallback_steps.to_string().into_bytes()));
    }
    if let Some(name) = &record.display_name {
        fields.push(("dn", name.as_str().into()));
    }
    fields
}

/// The record as `HSET` field/value pairs.
pub(super) fn encode(record: &Record) -> Vec<(&'static str, Vec<u8>)> {
    [
        ("sv", record.service.as_str().into()),
        ("s", record.status.as_str().into()),
        ("mt", record.masked_to.clone().into_bytes()),
        ("st", record.sealed_to.clone()),
        ("lc", record.locale.as_str().into()),
        ("c", record.created_at.millis().to_string().into_bytes()),
        ("e", record.expires_at.millis().to_string().into_bytes()),
        ("r", record.resend_after.millis().to_string().into_bytes()),
        ("n", record.sends.to_string().into_bytes()),
        ("a", record.attempts_left.to_string().into_bytes()),
        ("k", record.key_id.clone().into_bytes()),
        ("d", record.code_digest.to_vec()),
        (
            "b",
            record
                .binding_digest
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        ),
        ("nk", URL_SAFE_NO_PAD.encode(record.number.0).into_bytes()),
        ("cc", record.country_code.to_string().into_bytes()),
        ("co", record.country.clone().into_bytes()),
        (
            "ah",
            record
                .app_hash
                .as_ref()
                .map(|hash| hash.as_str().as_bytes().to_vec())
                .unwrap_or_default(),
        ),
        ("ds", record.delivery.status.as_str().into()),
        (
            "dc",
            record
                .delivery
                .carrier
                .clone()
                .unwrap_or_default()
                .into_bytes(),
        ),
        (
            "dm",
            record
                .delivery
                .message_id
                .clone()
                .unwrap_or_default()
                .into_bytes(),
        ),
        (
            "da",
            record
                .delivery
                .sent_at
                .map(|at| at.millis().to_string().into_bytes())
                .unwrap_or_default(),
        ),
    ]
    .into_iter()
    .chain(optional_fields(record))
    .collect()
}
