//! The schema: migrations applied in order, once each, when the store opens
//! ([`Store::open`](super::Store::open), which records them in
//! `schema_migrations`). A released migration is never changed or removed:
//! a change is a new migration.
//!
//! New migrations append at the end of [`MIGRATIONS`] with the next free
//! number. Versions 17 to 22 are reserved for work in progress: 17
//! performance, 18 conformance, 19 cluster, 20 grid, 21 payments and
//! fleets, 22 Plug & Charge; after them, 23 is the next free one.

/// Schema migrations, applied in order once each (`schema_migrations`).
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
    "CREATE TABLE IF NOT EXISTS stations (
        id TEXT PRIMARY KEY,
        password_hash TEXT,
        vendor TEXT, model TEXT, serial TEXT, firmware TEXT,
        ocpp_version TEXT,
        boot_status TEXT,
        last_boot TEXT, last_seen TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS connectors (
        station_id TEXT NOT NULL, evse_id BIGINT NOT NULL, connector_id BIGINT NOT NULL,
        status TEXT NOT NULL, error_code TEXT, updated_at TEXT NOT NULL,
        PRIMARY KEY (station_id, evse_id, connector_id)
    );
    CREATE TABLE IF NOT EXISTS tokens (
        id_token TEXT PRIMARY KEY, token_type TEXT NOT NULL, status TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        station_id TEXT NOT NULL, ocpp_tx_id TEXT NOT NULL,
        evse_id BIGINT, connector_id BIGINT,
        id_token TEXT,
        status TEXT NOT NULL,
        started_at TEXT, stopped_at TEXT,
        meter_start_wh TEXT, meter_stop_wh TEXT, last_register_wh TEXT,
        stop_reason TEXT,
        start_key TEXT,
        updated_at TEXT NOT NULL,
        UNIQUE (station_id, ocpp_tx_id)
    );
    CREATE TABLE IF NOT EXISTS session_start_keys (start_key TEXT PRIMARY KEY, session_id TEXT NOT NULL, ocpp_tx_id TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS tx_events (
        session_id TEXT NOT NULL, seq_no BIGINT NOT NULL, event_type TEXT NOT NULL,
        ts TEXT NOT NULL, payload TEXT NOT NULL,
        PRIMARY KEY (session_id, seq_no)
    );
    CREATE TABLE IF NOT EXISTS meter_values (
        session_id TEXT NOT NULL, ts TEXT NOT NULL, measurand TEXT NOT NULL,
        value TEXT NOT NULL, unit TEXT,
        PRIMARY KEY (session_id, ts, measurand)
    );
    CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        2,
        "CREATE TABLE IF NOT EXISTS tariffs (id TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS cdrs (
        session_id TEXT PRIMARY KEY, currency TEXT NOT NULL, total_excl TEXT NOT NULL, total_incl TEXT NOT NULL,
        body TEXT NOT NULL, created_at TEXT NOT NULL
    )",
    ),
    (
        3,
        "CREATE TABLE IF NOT EXISTS wallets (id_token TEXT PRIMARY KEY, balance TEXT NOT NULL, currency TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS payments (
        session_id TEXT PRIMARY KEY, id_token TEXT NOT NULL, held TEXT NOT NULL, status TEXT NOT NULL,
        receipt TEXT, updated_at TEXT NOT NULL
    )",
    ),
    (
        4,
        "CREATE TABLE IF NOT EXISTS ocpi_parties (id TEXT PRIMARY KEY, token TEXT NOT NULL, token_a BIGINT NOT NULL, registration TEXT, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS ocpi_objects (module TEXT NOT NULL, object_key TEXT NOT NULL, body TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (module, object_key))",
    ),
    (
        5,
        "CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, station_id TEXT, kind TEXT NOT NULL, detail TEXT NOT NULL, raised_at TEXT NOT NULL, cleared_at TEXT);
    CREATE TABLE IF NOT EXISTS station_uptime (station_id TEXT PRIMARY KEY, tracked_since TEXT NOT NULL, online_since TEXT, online_ms BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS device_model (station_id TEXT NOT NULL, component TEXT NOT NULL, variable TEXT NOT NULL, body TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (station_id, component, variable))",
    ),
    (
        6,
        // the transaction messages a session is rebuilt from (the model is the rule, these are
        // its input), the session's energy as the model computes it, and the outbox of side
        // effects written in the same database transaction as the message that causes them
        "CREATE TABLE IF NOT EXISTS tx_messages (session_id TEXT NOT NULL, msg_key TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL, received_at TEXT NOT NULL, PRIMARY KEY (session_id, msg_key));
    CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, created_at TEXT NOT NULL, done_at TEXT, attempts BIGINT NOT NULL, last_error TEXT);
    ALTER TABLE sessions ADD COLUMN energy_wh TEXT",
    ),
    (
        7,
        // what stations report besides transactions (charging limits and needs, monitoring,
        // display messages, DER, settlements, …), one row per message, see `add_station_report`
        "CREATE TABLE IF NOT EXISTS station_reports (station_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, received_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS station_reports_by_kind ON station_reports (station_id, kind, received_at)",
    ),
    (
        9,
        // roaming (store/ocpi.rs): a partner's sessions with their public ids, its reservations,
        // its recent remote starts
        "CREATE TABLE IF NOT EXISTS ocpi_sessions (session_id TEXT PRIMARY KEY, public_id TEXT NOT NULL UNIQUE, cdr_id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, token_uid TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS ocpi_sessions_by_owner ON ocpi_sessions (owner);
    CREATE TABLE IF NOT EXISTS ocpi_reservations (reservation_number BIGINT PRIMARY KEY, owner TEXT NOT NULL, reservation_id TEXT NOT NULL, station_id TEXT NOT NULL, token_uid TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (owner, reservation_id));
    CREATE TABLE IF NOT EXISTS ocpi_remote_starts (owner TEXT NOT NULL, token_uid TEXT NOT NULL, station_id TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS ocpi_remote_starts_by_uid ON ocpi_remote_starts (token_uid, created_at)",
    ),
    (
        11,
        // outbox retries with backoff: when an entry may run next (NULL: now), and the lane it
        // shares a retry hold with (an OCPI partner: one that is down holds all its pushes)
        "ALTER TABLE outbox ADD COLUMN next_attempt_at TEXT;
    ALTER TABLE outbox ADD COLUMN lane TEXT;
    CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (done_at, next_attempt_at)",
    ),
    (
        12,
        // keyset-paged lists (`Store::*_page`): the orders they page in, and stations in
        // natural order (`LOAD2` before `LOAD10`) by a stored key, see `natural_key`
        "ALTER TABLE stations ADD COLUMN sort_key TEXT;
    CREATE INDEX IF NOT EXISTS stations_by_sort_key ON stations (sort_key, id);
    CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions ((COALESCE(started_at, '')), id);
    CREATE INDEX IF NOT EXISTS sessions_by_station ON sessions (station_id, (COALESCE(started_at, '')), id);
    CREATE INDEX IF NOT EXISTS cdrs_by_created ON cdrs (created_at, session_id);
    CREATE INDEX IF NOT EXISTS alerts_by_raised ON alerts (raised_at, id)",
    ),
    (
        13,
        // per station (OCPP 2.0.1 B02, B03, A00): the boot answer the operator chose (NULL:
        // Accepted) and the security profile it connects under (NULL: the server's default)
        "ALTER TABLE stations ADD COLUMN registration TEXT;
    ALTER TABLE stations ADD COLUMN security_profile BIGINT",
    ),
    (
        14,
        // tokens' group (1.6 parentIdTag, 2.x groupIdToken) and expiry, see `TokenRecord`
        "ALTER TABLE tokens ADD COLUMN group_id TEXT;
    ALTER TABLE tokens ADD COLUMN expires_at TEXT",
    ),
    (
        15,
        // drivers and the app API (store/drivers.rs): accounts, their bearer logins (hashed),
        // the id tokens they own; card payments through a gateway (stripe.rs) per session, their
        // refunds, and the gateway's webhook events applied once
        "CREATE TABLE IF NOT EXISTS drivers (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, payment TEXT NOT NULL, card_customer TEXT, card_payment_method TEXT, card_label TEXT, created_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS driver_logins (token_hash TEXT PRIMARY KEY, driver_id TEXT NOT NULL, expires_at TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS driver_logins_by_driver ON driver_logins (driver_id);
    CREATE TABLE IF NOT EXISTS driver_tokens (id_token TEXT PRIMARY KEY, driver_id TEXT NOT NULL, kind TEXT NOT NULL, label TEXT, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS driver_tokens_by_driver ON driver_tokens (driver_id);
    CREATE TABLE IF NOT EXISTS card_payments (session_id TEXT PRIMARY KEY, driver_id TEXT NOT NULL, id_token TEXT NOT NULL, intent TEXT, status TEXT NOT NULL, gateway_status TEXT, currency TEXT NOT NULL, held_minor BIGINT NOT NULL, captured_minor BIGINT NOT NULL, refunded_minor BIGINT NOT NULL, receipt TEXT, updated_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS card_payments_by_intent ON card_payments (intent);
    CREATE TABLE IF NOT EXISTS card_refunds (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, amount_minor BIGINT NOT NULL, gateway_id TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS gateway_events (id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT, received_at TEXT NOT NULL)",
    ),
    (
        16,
        // a station's open alerts of a kind, found without reading every alert: raised and
        // cleared as stations go and come back (thousands in a reconnect storm); a token's
        // active sessions (ConcurrentTx, at every Authorize and start) without reading every
        // session
        "CREATE INDEX IF NOT EXISTS alerts_by_station ON alerts (station_id, kind, cleared_at);
    CREATE INDEX IF NOT EXISTS sessions_active_by_token ON sessions (LOWER(id_token)) WHERE status = 'Active'",
    ),
    (
        17,
        // smart charging (smart.rs, store/site.rs): the site's planned and delivered power
        // over time, one sample per recomputation and per half minute, kept a week
        "CREATE TABLE IF NOT EXISTS site_power (at TEXT PRIMARY KEY, limit_w BIGINT NOT NULL, planned_w TEXT NOT NULL, delivered_w TEXT)",
    ),
    (
        18,
        // conformance (issue 17): a token shared by several cars may be in several transactions
        // (else ConcurrentTx), and its driver's language (2.x language1, the tariff text of
        // I01); reservations the operator made or a station reported the end of (H01-H04); the
        // value each variable monitor last reported (N07, N08)
        "ALTER TABLE tokens ADD COLUMN allow_concurrent BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE tokens ADD COLUMN language TEXT;
    CREATE TABLE IF NOT EXISTS reservations (station_id TEXT NOT NULL, reservation_id BIGINT NOT NULL, evse_id BIGINT, id_token TEXT, group_id TEXT, expires_at TEXT, state TEXT NOT NULL, session_id TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (station_id, reservation_id));
    CREATE INDEX IF NOT EXISTS reservations_held ON reservations (station_id, evse_id, state);
    CREATE TABLE IF NOT EXISTS monitor_values (station_id TEXT NOT NULL, monitor_id BIGINT NOT NULL, component TEXT NOT NULL, variable TEXT NOT NULL, value TEXT NOT NULL, event_trigger TEXT NOT NULL, event_at TEXT NOT NULL, received_at TEXT NOT NULL, PRIMARY KEY (station_id, monitor_id))",
    ),
    (
        20,
        // the grid side (store/grid.rs, v2x.rs, der.rs): V2X sessions (the EV's bidirectional
        // needs, the setpoint in force, the energy fed back and its credit in minor units), the
        // site's grid events, and the DER controls set per station with the station's answer
        "CREATE TABLE IF NOT EXISTS v2x_sessions (session_id TEXT PRIMARY KEY, station_id TEXT NOT NULL, needs TEXT NOT NULL, setpoint TEXT, profile_sent BIGINT NOT NULL, status TEXT, exported_wh TEXT, credit_minor BIGINT, currency TEXT, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS grid_events (id TEXT PRIMARY KEY, body TEXT NOT NULL, starts_at TEXT NOT NULL, ends_at TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS grid_events_by_end ON grid_events (ends_at);
    CREATE TABLE IF NOT EXISTS der_controls (station_id TEXT NOT NULL, control_id TEXT NOT NULL, control_type TEXT NOT NULL, is_default BIGINT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (station_id, control_id))",
    ),
    (
        21,
        // fleets, their invoices and e-mail (store/fleets.rs): fleets with their drivers (one
        // fleet each), cards and vehicles; invoice numbers per series and year (gap-free: taken
        // in the transaction that keeps the document); the documents and which sessions are on
        // one (once per kind); the e-mail queue (sent through the outbox)
        "CREATE TABLE IF NOT EXISTS fleets (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS fleet_members (driver_id TEXT PRIMARY KEY, fleet_id TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS fleet_members_by_fleet ON fleet_members (fleet_id);
    CREATE TABLE IF NOT EXISTS fleet_tokens (id_token TEXT PRIMARY KEY, fleet_id TEXT NOT NULL, label TEXT, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS fleet_tokens_by_fleet ON fleet_tokens (fleet_id);
    CREATE TABLE IF NOT EXISTS fleet_vehicles (id TEXT PRIMARY KEY, fleet_id TEXT NOT NULL, plate TEXT NOT NULL, label TEXT, id_token TEXT, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS fleet_vehicles_by_fleet ON fleet_vehicles (fleet_id);
    CREATE UNIQUE INDEX IF NOT EXISTS fleet_vehicles_by_token ON fleet_vehicles (id_token);
    CREATE TABLE IF NOT EXISTS invoice_numbers (series TEXT NOT NULL, year BIGINT NOT NULL, last_seq BIGINT NOT NULL, PRIMARY KEY (series, year));
    CREATE TABLE IF NOT EXISTS invoices (number TEXT PRIMARY KEY, kind TEXT NOT NULL, fleet_id TEXT NOT NULL, period TEXT NOT NULL, credits TEXT, currency TEXT NOT NULL, total_minor BIGINT NOT NULL, issued_at TEXT NOT NULL, body TEXT NOT NULL, sent_at TEXT);
    CREATE INDEX IF NOT EXISTS invoices_by_fleet ON invoices (fleet_id, issued_at);
    CREATE UNIQUE INDEX IF NOT EXISTS invoices_one_per_month ON invoices (fleet_id, period) WHERE kind = 'invoice';
    CREATE TABLE IF NOT EXISTS invoiced_sessions (session_id TEXT NOT NULL, kind TEXT NOT NULL, number TEXT NOT NULL, PRIMARY KEY (session_id, kind));
    CREATE TABLE IF NOT EXISTS mails (id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, document TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL, sent_at TEXT);
    CREATE INDEX IF NOT EXISTS mails_by_kind ON mails (kind, created_at)",
    ),
    (
        22,
        // Plug & Charge (pnc/, store/certificates.rs): the certificate the CSMS's CA signed last
        // per station and use (renewal before it expires), and the lab OCSP responder's
        // revocations (by OCSP id: issuer name hash, issuer key hash, serial)
        "CREATE TABLE IF NOT EXISTS station_certificates (station_id TEXT NOT NULL, certificate_use TEXT NOT NULL, serial TEXT NOT NULL, not_after BIGINT NOT NULL, certificate TEXT NOT NULL, issued_at TEXT NOT NULL, renewal_requested_at TEXT, PRIMARY KEY (station_id, certificate_use));
    CREATE INDEX IF NOT EXISTS station_certificates_by_expiry ON station_certificates (not_after);
    CREATE TABLE IF NOT EXISTS certificate_revocations (cert_id TEXT PRIMARY KEY, revoked_at BIGINT NOT NULL)",
    ),
    (
        23,
        // local cost (local_cost.rs, store/settlements.rs): the payments a station's terminal
        // settled (2.1 NotifySettlement), one per station and PSP reference, linked to the
        // session of their transaction, with the receipt
        "CREATE TABLE IF NOT EXISTS settlements (station_id TEXT NOT NULL, psp_ref TEXT NOT NULL, session_id TEXT, transaction_id TEXT, status TEXT NOT NULL, amount TEXT NOT NULL, settled_at TEXT NOT NULL, status_info TEXT, receipt_id TEXT, receipt_url TEXT, received_at TEXT NOT NULL, PRIMARY KEY (station_id, psp_ref));
    CREATE INDEX IF NOT EXISTS settlements_by_session ON settlements (session_id)",
    ),
    (
        24,
        // periodic event streams (streams.rs, store/streams.rs): the streams stations opened,
        // with their parameters and when closed, and their values as a time series
        "CREATE TABLE IF NOT EXISTS event_streams (station_id TEXT NOT NULL, stream_id BIGINT NOT NULL, monitor_id BIGINT NOT NULL, interval_s BIGINT, values_n BIGINT, opened_at TEXT NOT NULL, closed_at TEXT, PRIMARY KEY (station_id, stream_id));
    CREATE TABLE IF NOT EXISTS event_stream_values (station_id TEXT NOT NULL, stream_id BIGINT NOT NULL, at TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (station_id, stream_id, at))",
    ),
    (
        25,
        // the site's DER policy (der.rs): the latest result of each of its controls per
        // station (the station's status, or why the call failed)
        "CREATE TABLE IF NOT EXISTS der_policy_results (station_id TEXT NOT NULL, control_id TEXT NOT NULL, control_type TEXT NOT NULL, status TEXT NOT NULL, error TEXT, applied_at TEXT NOT NULL, PRIMARY KEY (station_id, control_id))",
    ),
    (
        26,
        // the latest status of an operation per station (store/operations.rs: firmware
        // updates, log uploads), kept before in settings (`firmware_status:{station}`,
        // `log_status:{station}`), moved here by the migration's data step
        "CREATE TABLE IF NOT EXISTS operation_statuses (station_id TEXT NOT NULL, operation TEXT NOT NULL, request_id BIGINT, status TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (station_id, operation))",
    ),
    (
        27,
        // firmware campaigns (store/campaigns.rs): each campaign and what each of its stations
        // answered, kept before in settings (`campaign:{id}`), moved here by the migration's
        // data step
        "CREATE TABLE IF NOT EXISTS firmware_campaigns (id BIGINT PRIMARY KEY, location TEXT NOT NULL, signed BIGINT NOT NULL, started_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS firmware_campaign_stations (campaign_id BIGINT NOT NULL, position BIGINT NOT NULL, station_id TEXT NOT NULL, requested BIGINT NOT NULL, reason TEXT, answer TEXT, PRIMARY KEY (campaign_id, position))",
    ),
    (
        28,
        // where each station is (store/places.rs), kept before in settings
        // (`station_location:{id}`), moved here by the migration's data step
        "CREATE TABLE IF NOT EXISTS station_places (station_id TEXT PRIMARY KEY, name TEXT, address TEXT, city TEXT, postal_code TEXT, country TEXT, latitude TEXT, longitude TEXT, time_zone TEXT, updated_at TEXT NOT NULL)",
    ),
    (
        29,
        // what the CSMS knows of each station's local authorization list
        // (store/local_lists.rs): its version, whether its entries are known, and
        // those entries; kept before in settings (`local_list_version:{id}`,
        // `local_list_entries:{id}`), moved here by the migration's data step
        "CREATE TABLE IF NOT EXISTS local_lists (station_id TEXT PRIMARY KEY, version BIGINT NOT NULL, entries_known BIGINT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS local_list_entries (station_id TEXT NOT NULL, id_token TEXT NOT NULL, status TEXT NOT NULL, group_id TEXT, group_type TEXT, expires_at TEXT, PRIMARY KEY (station_id, id_token))",
    ),
    // New migrations go here, at the end, with the next free number (see the
    // module's documentation for the numbers reserved).
];
