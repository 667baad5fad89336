//! One-time codes: decimal digits drawn uniformly from the OS CSPRNG (SEC-1),
//! never printed, wiped from memory when dropped (SEC-11).

use std::fmt;

use rand::distr::{Distribution, Uniform};
use rand::rngs::OsRng;
use rand::TryRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The digits a user types. Only `generate` and `parse` make one; `Debug`
/// prints `Code(******)` so a stray `{:?}` cannot leak it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Code(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    #[error("the code must be {expected} digits long")]
    Length { expected: usize },
    #[error("the code may contain digits only")]
    NotDigits,
}

impl Code {
    /// Shortest and longest codes a service may use (SEC-2).
    pub const LENGTHS: std::ops::RangeInclusive<usize> = 6..=10;

    /// A fresh code of `length` digits, uniform over `[0, 10^length)`.
    ///
    /// `Uniform::sample` uses widening multiplication with a rejection zone,
    /// so no value is more likely than another (no modulo bias, SEC-1).
    pub fn generate(length: usize) -> Self {
        assert!(
            Self::LENGTHS.contains(&length),
            "code length {length} outside 6..=10"
        );
        let bound = 10u64.pow(length as u32);
        let digits = Uniform::new(0, bound).expect("a non-empty range");
        let value = digits.sample(&mut OsRng.unwrap_err());
        Code(format!("{value:0length$}"))
    }

    /// A code typed by a user, checked against the service's length.
    pub fn parse(raw: &str, length: usize) -> Result<Self, CodeError> {
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::NotDigits);
        }
        if raw.len() != length {
            return Err(CodeError::Length { expected: length });
        }
        Ok(Code(raw.to_owned()))
    }

    /// The digits, for the keyed digest and the SMS body only.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_keep_their_length_and_leading_zeros() {
        for length in Code::LENGTHS {
            for _ in 0..200 {
                let code = Code::generate(length);
                assert_eq!(code.digits().len(), length);
                assert!(code.digits().bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }

    /// SEC-1: every digit position is uniform. Chi-square over 10 bins with
    /// 9 degrees of freedom; 27.88 is the 0.999 quantile, so a fair generator
    /// fails this one time in a thousand per position.
    #[test]
    fn digits_are_uniformly_distributed_sec_1() {
        let samples = 200_000;
        let mut counts = [[0u32; 10]; 6];
        for _ in 0..samples {
            for (position, digit) in Code::generate(6).digits().bytes().enumerate() {
                counts[position][(digit - b'0') as usize] += 1;
            }
        }
        let expected = samples as f64 / 10.0;
        for (position, bins) in counts.iter().enumerate() {
            let chi2: f64 = bins
                .iter()
                .map(|&n| (n as f64 - expected).powi(2) / expected)
                .sum();
            assert!(
                chi2 < 27.88,
                "position {position}: chi-square {chi2:.1}, counts {bins:?}"
            );
        }
    }

    #[test]
    fn parse_rejects_wrong_length_and_non_digits() {
        assert_eq!(
            Code::parse("12345", 6).err(),
            Some(CodeError::Length { expected: 6 })
        );
        assert_eq!(
            Code::parse("1234567", 6).err(),
            Some(CodeError::Length { expected: 6 })
        );
        assert_eq!(Code::parse("12a456", 6).err(), Some(CodeError::NotDigits));
        assert_eq!(
            Code::parse("１２３４５６", 6).err(),
            Some(CodeError::NotDigits)
        );
        assert_eq!(
            Code::parse("012345", 6).map(|c| c.digits().to_owned()),
            Ok("012345".into())
        );
    }

    #[test]
    fn debug_never_shows_the_digits_sec_13() {
        let code = Code::parse("424242", 6).expect("valid");
        assert_eq!(format!("{code:?}"), "Code(******)");
    }
}
