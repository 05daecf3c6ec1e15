//! The charging profiles a simulated station holds (OCPP 1.6 §3.13 and
//! §5.16/§5.5; 2.0.1 and 2.1 K01, K08, K10): installed by
//! `SetChargingProfile` (a profile with the id of one held replaces it),
//! cleared by `ClearChargingProfile` by id or by criteria, `TxProfile`s
//! dropped when their transaction ends, and the composite schedule each
//! connector follows and `GetCompositeSchedule` reports, by the stacking
//! and combining rules of `evproto_csms_core::limits`.

use chrono::{DateTime, Utc};
use evproto_csms_core::limits::{
    self, CompositeRequest, CompositeSchedule, InstalledProfile, Purpose, RateUnit, TxRef,
};

/// The profiles held.
#[derive(Debug, Default, Clone)]
pub struct Profiles {
    held: Vec<InstalledProfile>,
}

/// A `ClearChargingProfile`'s selection (every given field must match).
#[derive(Debug, Default, Clone, Copy)]
pub struct Criteria {
    /// The profile id.
    pub id: Option<i32>,
    /// The EVSE (1.6: connector) it is installed on.
    pub evse: Option<u32>,
    /// Its purpose.
    pub purpose: Option<Purpose>,
    /// Its stack level.
    pub stack_level: Option<u32>,
}

impl Profiles {
    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Installs `p`, replacing a held profile with its id (1.6 §5.16,
    /// K01.FR.05); a station-wide profile only on EVSE 0 for the
    /// station's maximum, a `TxProfile` only on an EVSE.
    pub fn set(&mut self, p: InstalledProfile) -> bool {
        let placed = match p.profile.purpose {
            Purpose::StationMax => p.evse_id == 0,
            Purpose::Tx => p.evse_id != 0,
            _ => true,
        };
        if !placed || p.profile.validate().is_err() {
            return false;
        }
        self.held.retain(|h| h.profile.id != p.profile.id);
        self.held.push(p);
        true
    }

    /// Clears the profiles matching `c`; whether any was.
    pub fn clear(&mut self, c: Criteria) -> bool {
        let before = self.held.len();
        self.held.retain(|h| {
            let hit = c.id.is_none_or(|id| id == h.profile.id)
                && c.evse.is_none_or(|e| e == h.evse_id)
                && c.purpose.is_none_or(|p| p == h.profile.purpose)
                && c.stack_level.is_none_or(|s| s == h.profile.stack_level);
            !hit
        });
        self.held.len() < before
    }

    /// The SA schedule an ISO 15118 SECC offers for `evse` (and `tx`) from
    /// `now`: one tuple, a day long, of the composite's periods in W, a
    /// time no profile limits at `max_w`, each PMax within 0 and `max_w`;
    /// none when no profile limits the EVSE (the SECC then offers its
    /// maximum).
    pub fn sa_schedule(
        &self,
        evse: u32,
        tx: Option<TxRef>,
        now: DateTime<Utc>,
        max_w: f64,
    ) -> Vec<evproto_iso15118::session::ScheduleTuple> {
        use rust_decimal::prelude::ToPrimitive;
        const DAY_S: u32 = 86_400;
        let Ok(c) = self.composite(evse, tx, now, DAY_S, RateUnit::W) else {
            return Vec::new();
        };
        if c.periods.iter().all(|p| p.limit.is_none()) {
            return Vec::new();
        }
        let entries = c
            .periods
            .iter()
            .map(|p| {
                let w = p.limit.and_then(|l| l.to_f64()).unwrap_or(max_w);
                (p.start_s, w.clamp(0.0, max_w))
            })
            .collect();
        vec![evproto_iso15118::session::ScheduleTuple {
            id: 1,
            entries,
            duration: DAY_S,
        }]
    }

    /// Whether a `TxProfile` for transaction `tx` is held on `evse`.
    pub fn has_tx_profile(&self, evse: u32, tx: &str) -> bool {
        self.held.iter().any(|h| {
            h.evse_id == evse
                && h.profile.purpose == Purpose::Tx
                && h.profile.transaction_id.as_deref() == Some(tx)
        })
    }

    /// The transaction on `evse` ended: its `TxProfile`s go (1.6 §3.13.1,
    /// 2.0.1 K01: a `TxProfile` lasts as long as its transaction).
    pub fn tx_ended(&mut self, evse: u32) {
        self.held
            .retain(|h| !(h.profile.purpose == Purpose::Tx && h.evse_id == evse));
    }

    /// The composite schedule of `evse` from `now` for `duration_s`.
    ///
    /// # Errors
    ///
    /// A held profile is inconsistent (not installed by [`Profiles::set`]).
    pub fn composite(
        &self,
        evse: u32,
        tx: Option<TxRef>,
        now: DateTime<Utc>,
        duration_s: u32,
        unit: RateUnit,
    ) -> Result<CompositeSchedule, limits::Error> {
        let req = CompositeRequest {
            transaction: tx,
            ..CompositeRequest::new(evse, now, duration_s, unit)
        };
        limits::composite_schedule(&self.held, &req)
    }

    /// The limit `evse` follows now, W (`None`: no profile limits it).
    pub fn limit_w(&self, evse: u32, tx: Option<TxRef>, now: DateTime<Utc>) -> Option<f64> {
        use rust_decimal::prelude::ToPrimitive;
        self.composite(evse, tx, now, 1, RateUnit::W)
            .ok()?
            .limit_at(0)?
            .to_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evproto_ocpp_types::v201;

    fn profile(text: &str) -> InstalledProfile {
        let r: v201::SetChargingProfileRequest = evproto_ocpp_types::from_str(text).unwrap();
        InstalledProfile::try_from(&r).unwrap()
    }

    #[test]
    fn tx_profiles_override_the_default_for_their_transaction_and_go_with_it() {
        let mut p = Profiles::default();
        assert!(p.set(profile(
            r#"{"evseId":0,"chargingProfile":{"id":900,"stackLevel":1,"chargingProfilePurpose":"TxDefaultProfile",
            "chargingProfileKind":"Relative","chargingSchedule":[{"id":900,"chargingRateUnit":"W",
            "chargingSchedulePeriod":[{"startPeriod":0,"limit":2000}]}]}}"#
        )));
        assert!(p.set(profile(
            r#"{"evseId":1,"chargingProfile":{"id":1001,"stackLevel":1,"chargingProfilePurpose":"TxProfile",
            "chargingProfileKind":"Relative","transactionId":"T1","chargingSchedule":[{"id":1,"chargingRateUnit":"W",
            "chargingSchedulePeriod":[{"startPeriod":0,"limit":7000}]}]}}"#
        )));
        let now = Utc::now();
        let tx = |id: &str| {
            Some(TxRef {
                id: id.into(),
                started_at: now,
            })
        };
        assert_eq!(p.limit_w(1, tx("T1"), now), Some(7000.0));
        assert_eq!(p.limit_w(2, tx("T2"), now), Some(2000.0));
        assert_eq!(p.limit_w(1, None, now), Some(2000.0));
        assert!(p.has_tx_profile(1, "T1"));
        // offered to an ISO 15118 car: the TxProfile's 7 kW, capped at the EVSE's 5 kW
        let offered = p.sa_schedule(1, tx("T1"), now, 50_000.0);
        assert_eq!(offered.len(), 1);
        assert_eq!(offered[0].entries, vec![(0, 7_000.0)]);
        assert_eq!(
            p.sa_schedule(1, tx("T1"), now, 5_000.0)[0].entries,
            vec![(0, 5_000.0)]
        );
        assert_eq!(
            p.sa_schedule(1, None, now, 50_000.0)[0].entries,
            vec![(0, 2_000.0)]
        );
        assert!(!p.has_tx_profile(1, "T2") && !p.has_tx_profile(2, "T1"));
        p.tx_ended(1);
        assert!(!p.has_tx_profile(1, "T1"));
        assert_eq!(p.limit_w(1, tx("T1"), now), Some(2000.0));
        assert!(p.clear(Criteria {
            id: Some(900),
            ..Criteria::default()
        }));
        assert_eq!(p.limit_w(1, None, now), None);
        // nothing limits: no schedule of its own
        assert!(p.sa_schedule(1, None, now, 50_000.0).is_empty());
        assert!(!p.clear(Criteria::default()));
        // a station maximum only on EVSE 0
        assert!(!p.set(profile(
            r#"{"evseId":1,"chargingProfile":{"id":5,"stackLevel":0,"chargingProfilePurpose":"ChargingStationMaxProfile",
            "chargingProfileKind":"Absolute","chargingSchedule":[{"id":5,"startSchedule":"2026-01-01T00:00:00Z",
            "chargingRateUnit":"W","chargingSchedulePeriod":[{"startPeriod":0,"limit":1}]}]}}"#
        )));
    }
}
