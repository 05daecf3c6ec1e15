//! Smart charging: a site power limit shared by the active sessions (K02).
//!
//! With `site_limit_w` set, every session start and end, and every external
//! limit a station reports or clears (2.x `NotifyChargingLimit`,
//! `ClearedChargingLimit`: K11–K14), recomputes the shares with the core's
//! site allocator ([`evproto_csms_core::limits::allocate`]: equal shares,
//! an EVSE under an external limit gets no more than it and what it cannot
//! use goes to the others) and sends each session's station a
//! `TxDefaultProfile` for its EVSE/connector with `SetChargingProfile`, in
//! the station's OCPP version. Stations that refuse or do not answer are
//! reported as events; the next recomputation tries again.

use chrono::{DateTime, Utc};
use evproto_csms_core::limits::{self, CompositeRequest, InstalledProfile, RateUnit};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v16, v201, v21};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use tokio::sync::broadcast;

use crate::events::{LiveEvent, SentProfile};
use crate::gateway::{StationCallError, StationGateway};
use crate::store::Store;

/// The charging profile id the CSMS uses for the site share.
pub const PROFILE_ID: i32 = 900;

/// The site limit's shares: what [`SiteShares::rebalance`] needs, given
/// when the CSMS starts.
#[derive(Debug, Clone)]
pub struct SiteShares {
    /// Where the active sessions are read.
    pub store: Store,
    /// Where the profiles are sent.
    pub gateway: StationGateway,
    /// Where what was sent is published.
    pub events: broadcast::Sender<LiveEvent>,
    /// The site limit, W (`None`: no smart charging).
    pub site_limit_w: Option<u32>,
}

impl SiteShares {
    /// Recomputes the shares and sends them, in the background.
    pub fn rebalance(&self) {
        let Some(limit) = self.site_limit_w else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move { me.send_shares(limit).await });
    }

    async fn send_shares(&self, limit: u32) {
        let sessions = match self.store.sessions(None, 10_000).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("smart charging: {e}");
                return;
            }
        };
        let active: Vec<_> = sessions
            .into_iter()
            .filter(|s| s.status == "Active")
            .collect();
        if active.is_empty() {
            return;
        }
        let share = limit / u32::try_from(active.len()).unwrap_or(u32::MAX).max(1);
        let now = Utc::now();
        let mut sessions = Vec::with_capacity(active.len());
        for s in &active {
            let evse = u32::try_from(s.evse_id.or(s.connector_id).unwrap_or(1).max(1)).unwrap_or(1);
            let started = s
                .started_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or(now, |t| t.with_timezone(&Utc));
            sessions.push(limits::Session {
                external_limit_w: self.external_limit_w(&s.station_id, evse, now).await,
                ..limits::Session::new(s.id.clone(), evse, 3, Decimal::from(limit), started)
            });
        }
        // no minimum rate: every session keeps a share, none is paused
        let site = limits::Site {
            min_current_a: Decimal::ZERO,
            ..limits::Site::new(Decimal::from(limit))
        };
        let shares = match limits::allocate(&site, &sessions) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("smart charging: {e}");
                return;
            }
        };
        let mut sent = Vec::new();
        for s in &active {
            let Some(version) = self.gateway.version(&s.station_id).await else {
                continue;
            };
            let Some(watts) = shares
                .iter()
                .find(|a| a.session_id == s.id)
                .map(|a| a.watts)
            else {
                continue;
            };
            let evse =
                i32::try_from(s.evse_id.or(s.connector_id).unwrap_or(1).max(1)).unwrap_or(i32::MAX);
            let answer = set_share(
                &self.gateway,
                &s.station_id,
                version,
                evse,
                watts.normalize(),
            )
            .await;
            sent.push(SentProfile {
                station: s.station_id.clone(),
                session: s.id.clone(),
                limit_w: watts.floor().to_u32().unwrap_or(u32::MAX),
                status: match answer {
                    Ok(status) => status.to_owned(),
                    Err(e) => e.to_string(),
                },
            });
        }
        let _ = self.events.send(LiveEvent::SmartCharging {
            site_limit_w: limit,
            active_sessions: active.len(),
            share_w: share,
            sent,
        });
    }

    /// The external limit in force on `station`'s EVSE `evse` at `now`, W:
    /// the lowest of the NotifyChargingLimit reports no ClearedChargingLimit
    /// followed, for that EVSE or the whole station (K11–K14).
    async fn external_limit_w(
        &self,
        station: &str,
        evse: u32,
        now: DateTime<Utc>,
    ) -> Option<Decimal> {
        let reports = match crate::ocpp::charging_limits(&self.store, station).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(station, "smart charging: external limits not read: {e}");
                return None;
            }
        };
        let version = self.gateway.version(station).await?;
        reports
            .iter()
            .filter_map(|r| match version {
                ProtocolVersion::V201 => external_201(&r.body, evse, now),
                ProtocolVersion::V21 => external_21(&r.body, evse, now),
                _ => None,
            })
            .min()
    }
}

/// The limit in W a stored NotifyChargingLimit puts on EVSE `evse` at
/// `now`: its schedule read as a `ChargingStationExternalConstraints`
/// profile by the core's composite rules (`None`: not on that EVSE, no
/// schedule, or no limit now).
macro_rules! external_2x {
    ($name:ident, $ver:ident, [$($extra:ident),*]) => {
        fn $name(body: &serde_json::Value, evse: u32, now: DateTime<Utc>) -> Option<Decimal> {
            let req: $ver::NotifyChargingLimitRequest = serde_json::from_value(body.clone()).ok()?;
            let on = req.evse_id.unwrap_or(0);
            if on != 0 && u32::try_from(on).ok()? != evse {
                return None;
            }
            let schedule = req.charging_schedule?;
            let kind = if schedule.first()?.start_schedule.is_some() {
                $ver::ChargingProfileKindEnumType::Absolute
            } else {
                $ver::ChargingProfileKindEnumType::Relative
            };
            let profile = $ver::SetChargingProfileRequest {
                evse_id: on,
                charging_profile: $ver::ChargingProfileType {
                    id: 0,
                    stack_level: 0,
                    charging_profile_purpose:
                        $ver::ChargingProfilePurposeEnumType::ChargingStationExternalConstraints,
                    charging_profile_kind: kind,
                    recurrency_kind: None,
                    valid_from: None,
                    valid_to: None,
                    transaction_id: None,
                    charging_schedule: schedule,
                    custom_data: None,
                    $($extra: None,)*
                },
                custom_data: None,
            };
            let installed = InstalledProfile::try_from(&profile).ok()?;
            limits::composite_schedule(&[installed], &CompositeRequest::new(evse, now, 1, RateUnit::W))
                .ok()?
                .limit_at(0)
        }
    };
}
external_2x!(external_201, v201, []);
external_2x!(
    external_21,
    v21,
    [
        max_offline_duration,
        invalid_after_offline_duration,
        dyn_update_interval,
        dyn_update_time,
        price_schedule_signature
    ]
);

/// Sends `station` (connected with `version`) a `TxDefaultProfile` limiting
/// `evse` (1.6: connector) to `limit_w`; its answer's status.
///
/// # Errors
///
/// The call failed (see [`StationGateway::call`]).
pub async fn set_share(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    evse: i32,
    limit_w: Decimal,
) -> Result<&'static str, StationCallError> {
    Ok(match version {
        ProtocolVersion::V16 => {
            let request = v16::SetChargingProfileRequest {
                connector_id: evse,
                cs_charging_profiles: v16::ChargingProfile {
                    charging_profile_id: PROFILE_ID,
                    transaction_id: None,
                    stack_level: 1,
                    charging_profile_purpose: v16::ChargingProfilePurposeType::TxDefaultProfile,
                    charging_profile_kind: v16::ChargingProfileKindType::Relative,
                    recurrency_kind: None,
                    valid_from: None,
                    valid_to: None,
                    charging_schedule: v16::ChargingSchedule {
                        duration: None,
                        start_schedule: None,
                        charging_rate_unit: v16::ChargingRateUnitType::W,
                        charging_schedule_period: vec![v16::ChargingSchedulePeriod {
                            start_period: 0,
                            limit: limit_w,
                            number_phases: None,
                        }],
                        min_charging_rate: None,
                    },
                },
            };
            gateway
                .call::<v16::action::SetChargingProfile>(station, request)
                .await?
                .status
                .as_str()
        }
        ProtocolVersion::V201 => {
            let request = v201::SetChargingProfileRequest {
                custom_data: None,
                evse_id: evse,
                charging_profile: v201::ChargingProfileType {
                    custom_data: None,
                    id: PROFILE_ID,
                    stack_level: 1,
                    charging_profile_purpose:
                        v201::ChargingProfilePurposeEnumType::TxDefaultProfile,
                    charging_profile_kind: v201::ChargingProfileKindEnumType::Relative,
                    recurrency_kind: None,
                    valid_from: None,
                    valid_to: None,
                    charging_schedule: vec![v201::ChargingScheduleType {
                        custom_data: None,
                        id: PROFILE_ID,
                        start_schedule: None,
                        duration: None,
                        charging_rate_unit: v201::ChargingRateUnitEnumType::W,
                        charging_schedule_period: vec![v201::ChargingSchedulePeriodType {
                            custom_data: None,
                            start_period: 0,
                            limit: limit_w,
                            number_phases: None,
                            phase_to_use: None,
                        }],
                        min_charging_rate: None,
                        sales_tariff: None,
                    }],
                    transaction_id: None,
                },
            };
            gateway
                .call::<v201::action::SetChargingProfile>(station, request)
                .await?
                .status
                .as_str()
        }
        _ => {
            let request = v21::SetChargingProfileRequest {
                evse_id: evse,
                charging_profile: v21_profile(limit_w),
                custom_data: None,
            };
            gateway
                .call::<v21::action::SetChargingProfile>(station, request)
                .await?
                .status
                .as_str()
        }
    })
}

/// The 2.1 `TxDefaultProfile` of a share (2.1 adds optional fields, all left out).
fn v21_profile(limit_w: Decimal) -> v21::ChargingProfileType {
    v21::ChargingProfileType {
        id: PROFILE_ID,
        stack_level: 1,
        charging_profile_purpose: v21::ChargingProfilePurposeEnumType::TxDefaultProfile,
        charging_profile_kind: v21::ChargingProfileKindEnumType::Relative,
        recurrency_kind: None,
        valid_from: None,
        valid_to: None,
        transaction_id: None,
        max_offline_duration: None,
        charging_schedule: vec![v21::ChargingScheduleType {
            id: PROFILE_ID,
            limit_at_soc: None,
            start_schedule: None,
            duration: None,
            charging_rate_unit: v21::ChargingRateUnitEnumType::W,
            min_charging_rate: None,
            power_tolerance: None,
            signature_id: None,
            digest_value: None,
            use_local_time: None,
            charging_schedule_period: vec![v21::ChargingSchedulePeriodType {
                start_period: 0,
                limit: Some(limit_w),
                limit_l2: None,
                limit_l3: None,
                number_phases: None,
                phase_to_use: None,
                discharge_limit: None,
                discharge_limit_l2: None,
                discharge_limit_l3: None,
                setpoint: None,
                setpoint_l2: None,
                setpoint_l3: None,
                setpoint_reactive: None,
                setpoint_reactive_l2: None,
                setpoint_reactive_l3: None,
                preconditioning_request: None,
                evse_sleep: None,
                v2x_baseline: None,
                operation_mode: None,
                v2x_freq_watt_curve: None,
                v2x_signal_watt_curve: None,
                custom_data: None,
            }],
            randomized_delay: None,
            sales_tariff: None,
            absolute_price_schedule: None,
            price_level_schedule: None,
            custom_data: None,
        }],
        invalid_after_offline_duration: None,
        dyn_update_interval: None,
        dyn_update_time: None,
        price_schedule_signature: None,
        custom_data: None,
    }
}
