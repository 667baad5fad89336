//! What an operator does for the relying party (admin API, `otpd admin`):
//! read and lift a number's failure lockout (SEC-8) and the blocks on its
//! destination (the range limit's block, and its range's and country's
//! conversion blocks, ABU-4, ABU-6), and keep the safe list (`safe.rs`).
//! The transport audits each call.

use std::time::Duration;

use super::{Error, Listed, Otp};
use crate::domain::{Phone, ServiceName, Timestamp};

/// A number's consecutive wrong codes while they count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    pub failures: u32,
    /// `max` reached: no check until `decays_at`.
    pub locked: bool,
    /// Checks wait until then (the progressive delay).
    pub wait_until: Timestamp,
    /// When the count is forgotten.
    pub decays_at: Timestamp,
}

/// A block on the number's destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// `range` or `conversion`.
    pub scope: &'static str,
    pub until: Timestamp,
}

/// What holds a number back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberState {
    pub masked_to: String,
    pub lockout: Option<Lockout>,
    pub blocks: Vec<Block>,
    /// On the safe list, itself or by its range.
    pub safe: Listed,
}

/// What to lift.
#[derive(Clone, Copy, Debug)]
pub struct Lift {
    pub lockout: bool,
    pub blocks: bool,
}

impl Otp {
    /// The number's lockout and the blocks on its destination.
    pub async fn number_state(
        &self,
        service: &ServiceName,
        phone: &Phone,
    ) -> Result<NumberState, Error> {
        let service = self.service(service)?;
        let now = self.clock.now();
        let number = self.keyring.number_key(&service.name, phone);
        let failures = self.stores.verifications.failures(&number, now).await?;
        let policy = &service.limits.failed_checks;
        let lockout = failures.map(|failures| Lockout {
            failures: failures.count,
            locked: failures.count >= policy.max,
            wait_until: failures.wait_until,
            decays_at: failures.last.plus(policy.decay),
        });
        let mut blocks = Vec::new();
        for group in service
            .limits
            .destination_groups(&self.keyring, service.name.as_str(), phone)
        {
            if let Some(until) = self.stores.limits.blocked(&group, now).await? {
                let scope = group.items[0].scope.as_str();
                blocks.push(Block { scope, until });
            }
        }
        Ok(NumberState {
            masked_to: phone.masked().to_owned(),
            lockout,
            blocks,
            safe: self.listed(service, phone).await?,
        })
    }

    /// Lifts what `lift` names; returns the state as it was.
    pub async fn lift(
        &self,
        service_name: &ServiceName,
        phone: &Phone,
        lift: Lift,
    ) -> Result<NumberState, Error> {
        let before = self.number_state(service_name, phone).await?;
        let service = self.service(service_name)?;
        if lift.lockout {
            let number = self.keyring.number_key(&service.name, phone);
            self.stores.verifications.forget_failures(&number).await?;
        }
        if lift.blocks {
            for group in
                service
                    .limits
                    .destination_groups(&self.keyring, service.name.as_str(), phone)
            {
                self.stores.limits.lift(&group).await?;
            }
        }
        Ok(before)
    }

    /// Puts `phone` (or, with `range`, its range) on the safe list for
    /// `period`, or takes it off (`None`); returns the state as it was.
    pub async fn list_safe(
        &self,
        service_name: &ServiceName,
        phone: &Phone,
        range: bool,
        period: Option<Duration>,
    ) -> Result<NumberState, Error> {
        let before = self.number_state(service_name, phone).await?;
        let service = self.service(service_name)?;
        self.set_safe(service, phone, range, period).await?;
        Ok(before)
    }
}
