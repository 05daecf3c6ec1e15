//! Smart charging: a site power limit shared by the active sessions.
//!
//! With `site_limit_w` set, every session start and end recomputes the
//! share (the limit divided evenly over the active sessions) and sends each
//! session's station a `TxDefaultProfile` for its EVSE/connector with
//! `SetChargingProfile`, in the station's OCPP version. Stations that refuse
//! or do not answer are reported as events; the next recomputation tries
//! again.

use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v16, v201, v21};
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
        let mut sent = Vec::new();
        for s in &active {
            let Some(version) = self.gateway.version(&s.station_id).await else {
                continue;
            };
            let evse =
                i32::try_from(s.evse_id.or(s.connector_id).unwrap_or(1).max(1)).unwrap_or(i32::MAX);
            let answer = set_share(&self.gateway, &s.station_id, version, evse, share.into()).await;
            sent.push(SentProfile {
                station: s.station_id.clone(),
                session: s.id.clone(),
                limit_w: share,
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
}

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
