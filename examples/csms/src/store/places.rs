//! Where each station is, as the operator registered it (`PUT
//! /api/stations/{id}` with `location`): one row per station in
//! `station_places` (migration 28), each field its own column. The
//! operator API checks a place against OCPI's bounds before it is kept
//! ([`crate::roaming::Place`]); its OCPI Location, the app's station view
//! and the console read it from here.

use std::collections::HashMap;

use sqlx::Row;

use super::{now, Result, Store};

/// A station's place as kept: the text of each field registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StationPlace {
    /// Display name.
    pub name: Option<String>,
    /// Street and number.
    pub address: Option<String>,
    /// City or town.
    pub city: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-3 country code.
    pub country: Option<String>,
    /// WGS 84 (latitude, longitude), OCPI's decimal text.
    pub coordinates: Option<(String, String)>,
    /// IANA time zone.
    pub time_zone: Option<String>,
}

/// The settings-table form earlier versions kept a place in
/// (`station_location:{id}`: the place's JSON), read once by the migration
/// that moves it.
#[derive(serde::Deserialize)]
struct Legacy {
    name: Option<String>,
    address: Option<String>,
    city: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
    coordinates: Option<LegacyCoordinates>,
    time_zone: Option<String>,
}

#[derive(serde::Deserialize)]
struct LegacyCoordinates {
    latitude: String,
    longitude: String,
}

const COLUMNS: &str =
    "station_id, name, address, city, postal_code, country, latitude, longitude, time_zone";

/// Keeps `p` as `station`'s place through `q` (a pool or a transaction).
async fn upsert<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    e: E,
    station: &str,
    p: &StationPlace,
) -> Result<()> {
    let (lat, lon) = p.coordinates.clone().unzip();
    sqlx::query(&format!(
        "INSERT INTO station_places ({COLUMNS}, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (station_id) DO UPDATE SET name = $2, address = $3, city = $4, postal_code = $5, \
         country = $6, latitude = $7, longitude = $8, time_zone = $9, updated_at = $10"
    ))
    .bind(station.to_owned())
    .bind(p.name.clone())
    .bind(p.address.clone())
    .bind(p.city.clone())
    .bind(p.postal_code.clone())
    .bind(p.country.clone())
    .bind(lat)
    .bind(lon)
    .bind(p.time_zone.clone())
    .bind(now())
    .execute(e)
    .await?;
    Ok(())
}

fn place_of(r: &sqlx::any::AnyRow) -> Result<(String, StationPlace)> {
    let lat: Option<String> = r.try_get(6)?;
    let lon: Option<String> = r.try_get(7)?;
    Ok((
        r.try_get(0)?,
        StationPlace {
            name: r.try_get(1)?,
            address: r.try_get(2)?,
            city: r.try_get(3)?,
            postal_code: r.try_get(4)?,
            country: r.try_get(5)?,
            coordinates: lat.zip(lon),
            time_zone: r.try_get(8)?,
        },
    ))
}

/// Migration 28's data step, in its transaction: the places kept as
/// settings move to `station_places`; one that does not read is left where
/// it was (and logged), never guessed.
pub(super) async fn move_from_settings(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    let rows = sqlx::query(
        "SELECT key, value FROM settings WHERE key LIKE 'station!_location:%' ESCAPE '!'",
    )
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let (key, value): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let Some(station) = key.strip_prefix("station_location:") else {
            continue;
        };
        let Ok(l) = serde_json::from_str::<Legacy>(&value) else {
            tracing::warn!(
                key,
                "a station's place that does not read: left in settings"
            );
            continue;
        };
        let place = StationPlace {
            name: l.name,
            address: l.address,
            city: l.city,
            postal_code: l.postal_code,
            country: l.country,
            coordinates: l.coordinates.map(|c| (c.latitude, c.longitude)),
            time_zone: l.time_zone,
        };
        upsert(&mut **tx, station, &place).await?;
        super::settings::delete_in(tx, &key).await?;
    }
    Ok(())
}

impl Store {
    /// Keeps `place` as `station`'s (replacing the one it had).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_place(&self, station: &str, place: &StationPlace) -> Result<()> {
        upsert(&self.pool, station, place).await
    }

    /// `station`'s place, if one was registered.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn place(&self, station: &str) -> Result<Option<StationPlace>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM station_places WHERE station_id = $1"
        ))
        .bind(station.to_owned())
        .fetch_optional(&self.read)
        .await?
        .map(|r| place_of(&r).map(|(_, p)| p))
        .transpose()
    }

    /// The places of `stations` that have one, by station (one read).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn places(&self, stations: &[String]) -> Result<HashMap<String, StationPlace>> {
        if stations.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM station_places WHERE station_id IN ({})",
            super::in_list(stations.len())
        );
        super::bind_all(sqlx::query(&sql), stations)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(place_of)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::store::on_both_stores!(
        /// A place reads back as kept, is replaced by the next, is read in a
        /// batch; a place of an earlier version moves from settings when the
        /// store opens, one that does not read stays.
        places_kept_and_moved_from_settings,
        places_kept_and_moved_from_settings_on_postgres,
        "places",
        kept_and_moved
    );

    async fn kept_and_moved(store: &Store) {
        let depot = StationPlace {
            name: Some("Depot".into()),
            city: Some("Utrecht".into()),
            country: Some("NLD".into()),
            coordinates: Some(("52.089444".into(), "5.110278".into())),
            ..StationPlace::default()
        };
        store.put_place("CS1", &depot).await.unwrap();
        assert_eq!(store.place("CS1").await.unwrap(), Some(depot.clone()));
        assert_eq!(store.place("CS2").await.unwrap(), None);
        let moved = StationPlace {
            coordinates: None,
            address: Some("Stationsplein 1".into()),
            ..depot.clone()
        };
        store.put_place("CS1", &moved).await.unwrap();
        assert_eq!(store.place("CS1").await.unwrap(), Some(moved.clone()));
        let batch = store.places(&["CS1".into(), "CS2".into()]).await.unwrap();
        assert_eq!(batch, HashMap::from([("CS1".to_string(), moved)]));

        // a store of an earlier version: places in settings
        store
            .put_setting(
                "station_location:CS3",
                r#"{"name":"Hub","postal_code":"3511 AA","time_zone":"Europe/Amsterdam",
                    "coordinates":{"latitude":"52.000000","longitude":"5.000000"}}"#,
            )
            .await
            .unwrap();
        store
            .put_setting("station_location:CS4", "garbage")
            .await
            .unwrap();
        let mut tx = store.pool.begin().await.unwrap();
        move_from_settings(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let hub = store.place("CS3").await.unwrap().unwrap();
        assert_eq!(hub.name.as_deref(), Some("Hub"));
        assert_eq!(
            hub.coordinates,
            Some(("52.000000".into(), "5.000000".into()))
        );
        assert_eq!(hub.time_zone.as_deref(), Some("Europe/Amsterdam"));
        assert_eq!(store.setting("station_location:CS3").await.unwrap(), None);
        assert_eq!(
            store
                .setting("station_location:CS4")
                .await
                .unwrap()
                .as_deref(),
            Some("garbage")
        );
    }
}
