//! The secrets behind every digest, and what is derived from them.
//!
//! Each configured secret yields independent keys, one per purpose
//! (`HMAC-SHA256(secret, "otpd/<purpose>")`), so a digest made for one
//! purpose is useless for another. The first secret makes new digests; all
//! of them check (rotation).
//!
//! What otpd counts and looks up by (limits, failure counters, a number's
//! verifications, Idempotency-Keys) is keyed from the index secret instead,
//! which rotation leaves alone: a rotation must not reset a lockout.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::TryRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::domain::{Binding, Code, Phone, ServiceName, VerificationId};
use crate::ratelimit::KeyMaker;
use crate::store::{Candidate, Digest, IdempotencyKey, KeyId, NumberKey};

type HmacSha256 = Hmac<Sha256>;
const NONCE_LEN: usize = 12;

/// A configured secret: an id (recorded with each verification) and at
/// least 32 bytes of key material.
#[derive(Clone)]
pub struct Secret {
    pub id: KeyId,
    pub value: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret {{ id: {:?}, value: [redacted] }}", self.id)
    }
}

pub struct Keyring {
    /// Never empty; the first one is current.
    keys: Vec<Keys>,
    index: IndexKeys,
}

/// The keys of one rotating secret.
struct Keys {
    id: KeyId,
    code: Zeroizing<[u8; 32]>,
    binding: Zeroizing<[u8; 32]>,
    seal: Aes256Gcm,
}

/// The keys of the index secret.
struct IndexKeys {
    number: Zeroizing<[u8; 32]>,
    idempotency: Zeroizing<[u8; 32]>,
    limit: Zeroizing<[u8; 32]>,
}

/// `HMAC-SHA256(secret, "otpd/<purpose>")`.
fn derive(secret: &[u8], purpose: &str) -> Zeroizing<Digest> {
    Zeroizing::new(hmac(secret, &[b"otpd/", purpose.as_bytes()]))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Digest {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn truncated(digest: Digest) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

impl Keys {
    fn derive(secret: &Secret) -> Self {
        let seal_key = derive(&secret.value, "seal");
        Keys {
            id: secret.id.clone(),
            code: derive(&secret.value, "code"),
            binding: derive(&secret.value, "binding"),
            seal: Aes256Gcm::new_from_slice(seal_key.as_slice()).expect("32-byte key"),
        }
    }
}

impl Keyring {
    /// `secrets` must not be empty (config validation guarantees it).
    pub fn new(secrets: &[Secret], index_secret: &[u8]) -> Self {
        assert!(!secrets.is_empty(), "at least one secret");
        Keyring {
            keys: secrets.iter().map(Keys::derive).collect(),
            index: IndexKeys {
                number: derive(index_secret, "number"),
                idempotency: derive(index_secret, "idempotency"),
                limit: derive(index_secret, "limit"),
            },
        }
    }

    fn current(&self) -> &Keys {
        &self.keys[0]
    }

    fn named(&self, id: &str) -> Option<&Keys> {
        self.keys.iter().find(|keys| keys.id == id)
    }

    pub fn current_id(&self) -> &KeyId {
        &self.current().id
    }

    /// Indexes the number's verifications of one service without storing it.
    pub fn number_key(&self, service: &ServiceName, phone: &Phone) -> NumberKey {
        let digest = hmac(
            self.index.number.as_slice(),
            &[service.as_str().as_bytes(), b"\0", phone.e164().as_bytes()],
        );
        NumberKey(truncated(digest))
    }

    /// Scopes an `Idempotency-Key` to the API key that sent it.
    pub fn idempotency_key(&self, api_key: &str, key: &str) -> IdempotencyKey {
        let digest = hmac(
            self.index.idempotency.as_slice(),
            &[b"key\0", api_key.as_bytes(), b"\0", key.as_bytes()],
        );
        IdempotencyKey(truncated(digest))
    }

    /// A keyed fingerprint of a request: bodies hold phone numbers, and a
    /// plain hash of a number is easy to reverse.
    pub fn fingerprint(&self, request: &[u8]) -> Digest {
        hmac(self.index.idempotency.as_slice(), &[b"request\0", request])
    }

    /// `HMAC(code key, id ‖ code)` under the current secret (DESIGN invariant 1).
    pub fn code_digest(&self, id: &VerificationId, code: &Code) -> Digest {
        hmac(
            self.current().code.as_slice(),
            &[id.as_bytes(), code.digits().as_bytes()],
        )
    }

    pub fn binding_digest(&self, service: &ServiceName, binding: &Binding) -> Digest {
        hmac(
            self.current().binding.as_slice(),
            &[service.as_str().as_bytes(), b"\0", binding.as_bytes()],
        )
    }

    /// The digests of `code` (and `binding`) under every secret.
    pub fn candidates(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        code: &Code,
        binding: Option<&Binding>,
    ) -> Vec<Candidate> {
        self.keys
            .iter()
            .map(|keys| Candidate {
                key_id: keys.id.clone(),
                code: hmac(
                    keys.code.as_slice(),
                    &[id.as_bytes(), code.digits().as_bytes()],
                ),
                binding: binding.map(|binding| {
                    hmac(
                        keys.binding.as_slice(),
                        &[service.as_str().as_bytes(), b"\0", binding.as_bytes()],
                    )
                }),
            })
            .collect()
    }

    /// Encrypts `plain` (AES-256-GCM) under the current secret, bound to
    /// `what` and the verification id: a sealed value only opens for the
    /// purpose and verification it was made for.
    fn encrypt(&self, what: &[u8], id: &VerificationId, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.try_fill_bytes(&mut nonce).expect("OS RNG");
        let aad = [what, id.as_bytes()].concat();
        let payload = Payload {
            msg: plain,
            aad: &aad,
        };
        let sealed = self
            .current()
            .seal
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-GCM encrypts");
        [nonce.as_slice(), &sealed].concat()
    }

    fn decrypt(
        &self,
        key_id: &str,
        what: &[u8],
        id: &VerificationId,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let keys = self.named(key_id)?;
        if sealed.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = [what, id.as_bytes()].concat();
        let payload = Payload {
            msg: ciphertext,
            aad: &aad,
        };
        keys.seal
            .decrypt(Nonce::from_slice(nonce), payload)
            .ok()
            .map(Zeroizing::new)
    }

    /// The E.164 number, sealed for resends.
    pub fn seal(&self, id: &VerificationId, phone: &Phone) -> Vec<u8> {
        self.encrypt(b"number", id, phone.e164().as_bytes())
    }

    /// The E.164 number sealed by `seal` under secret `key_id`.
    pub fn open(
        &self,
        key_id: &str,
        id: &VerificationId,
        sealed: &[u8],
    ) -> Option<Zeroizing<String>> {
        let plain = self.decrypt(key_id, b"number", id, sealed)?;
        String::from_utf8(plain.to_vec()).ok().map(Zeroizing::new)
    }

    /// The code, sealed for the outbox (never in clear at rest, SEC-11).
    pub fn seal_code(&self, id: &VerificationId, code: &Code) -> Vec<u8> {
        self.encrypt(b"code", id, code.digits().as_bytes())
    }

    /// The code sealed by `seal_code`, if it opens and has `length` digits.
    pub fn open_code(
        &self,
        key_id: &str,
        id: &VerificationId,
        sealed: &[u8],
        length: usize,
    ) -> Option<Code> {
        let plain = self.decrypt(key_id, b"code", id, sealed)?;
        Code::parse(std::str::from_utf8(&plain).ok()?, length).ok()
    }
}

/// Limit keys: keyed hashes of what is limited (RL-6), under the index
/// secret.
impl KeyMaker for Keyring {
    fn limit_key(&self, parts: &[&[u8]]) -> [u8; 16] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(self.index.limit.as_slice())
            .expect("any key length");
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        truncated(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &[u8] = &[9; 32];

    fn secret(id: &str, byte: u8) -> Secret {
        Secret {
            id: id.into(),
            value: Zeroizing::new(vec![byte; 32]),
        }
    }

    fn phone() -> Phone {
        Phone::parse("+819012345678", "JP".parse().expect("JP")).expect("phone")
    }

    #[test]
    fn sealed_codes_open_only_for_their_verification_and_purpose() {
        let ring = Keyring::new(&[secret("k1", 1)], INDEX);
        let id = VerificationId::generate([0, 0]);
        let code = Code::parse("123456", 6).expect("code");
        let sealed = ring.seal_code(&id, &code);
        assert!(!sealed.windows(6).any(|w| w == b"123456"), "not in clear");
        assert_eq!(
            ring.open_code("k1", &id, &sealed, 6)
                .map(|c| c.digits().to_owned()),
            Some("123456".into())
        );
        assert!(ring
            .open_code("k1", &VerificationId::generate([0, 0]), &sealed, 6)
            .is_none());
        assert!(
            ring.open("k1", &id, &sealed).is_none(),
            "a sealed code is not a sealed number"
        );
    }

    #[test]
    fn sealed_numbers_open_only_with_their_id_and_secret() {
        let ring = Keyring::new(&[secret("k1", 1)], INDEX);
        let id = VerificationId::generate([0, 0]);
        let sealed = ring.seal(&id, &phone());
        assert!(!sealed.windows(9).any(|w| w == b"901234567"));
        assert_eq!(
            ring.open("k1", &id, &sealed).as_deref().map(String::as_str),
            Some("+819012345678")
        );
        assert!(ring
            .open("k1", &VerificationId::generate([0, 0]), &sealed)
            .is_none());
        assert!(ring.open("k2", &id, &sealed).is_none());
    }

    /// SEC-11: the stored digest is keyed, bound to the id, and not the code.
    #[test]
    fn code_digests_depend_on_secret_id_and_code() {
        let ring = Keyring::new(&[secret("k1", 1)], INDEX);
        let other_ring = Keyring::new(&[secret("k1", 2)], INDEX);
        let id = VerificationId::generate([0, 0]);
        let code = Code::parse("123456", 6).expect("code");
        let digest = ring.code_digest(&id, &code);
        assert_ne!(digest, other_ring.code_digest(&id, &code));
        assert_ne!(
            digest,
            ring.code_digest(&VerificationId::generate([0, 0]), &code)
        );
        assert_ne!(
            digest,
            ring.code_digest(&id, &Code::parse("123457", 6).expect("code"))
        );
    }

    #[test]
    fn candidates_cover_every_secret_with_the_current_first() {
        let old = Keyring::new(&[secret("old", 1)], INDEX);
        let rotated = Keyring::new(&[secret("new", 2), secret("old", 1)], INDEX);
        let (service, id) = (
            "demo".parse().expect("name"),
            VerificationId::generate([0, 0]),
        );
        let code = Code::parse("123456", 6).expect("code");
        let candidates = rotated.candidates(&service, &id, &code, None);
        assert_eq!(
            candidates
                .iter()
                .map(|c| c.key_id.as_str())
                .collect::<Vec<_>>(),
            ["new", "old"]
        );
        assert_eq!(candidates[1].code, old.code_digest(&id, &code));
        assert_eq!(candidates[0].code, rotated.code_digest(&id, &code));
    }

    #[test]
    fn rotation_keeps_what_is_counted_and_indexed() {
        let old = Keyring::new(&[secret("old", 1)], INDEX);
        let rotated = Keyring::new(&[secret("new", 2), secret("old", 1)], INDEX);
        let service = "demo".parse().expect("name");
        assert_eq!(
            old.number_key(&service, &phone()).0,
            rotated.number_key(&service, &phone()).0
        );
        assert_eq!(old.limit_key(&[b"ip"]), rotated.limit_key(&[b"ip"]));
        assert_eq!(
            old.idempotency_key("all", "k").0,
            rotated.idempotency_key("all", "k").0
        );
        let other_index = Keyring::new(&[secret("old", 1)], &[8; 32]);
        assert_ne!(old.limit_key(&[b"ip"]), other_index.limit_key(&[b"ip"]));
    }
}
