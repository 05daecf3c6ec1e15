//! Country → time zones, read from the tz database's own `zone.tab`
//! (vendored unmodified in `ocpi/data/tzdata/`, the release `chrono-tz`
//! bundles): `chrono-tz` compiles the zone rules but not the country
//! tables, so the table is derived here from the file, never typed by hand.
//!
//! OCPI names a location's country in ISO 3166-1 alpha-3 (`NLD`);
//! `zone.tab` uses alpha-2 (`NL`). The alpha-3 → alpha-2 step is the
//! `isocountry` crate's ISO 3166-1 table.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The tz database release of `ocpi/data/tzdata/zone.tab`.
#[cfg(test)]
const TZDB_RELEASE: &str = "2025b";

const ZONE_TAB: &str = include_str!("../../data/tzdata/zone.tab");

/// Every `zone.tab` row: alpha-2 country code → its zones, in file order.
fn table() -> &'static BTreeMap<&'static str, Vec<&'static str>> {
    static TABLE: OnceLock<BTreeMap<&'static str, Vec<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
        for line in ZONE_TAB.lines().filter(|l| !l.starts_with('#')) {
            let mut cols = line.split('\t');
            if let (Some(cc), Some(_coordinates), Some(zone)) =
                (cols.next(), cols.next(), cols.next())
            {
                t.entry(cc).or_default().push(zone);
            }
        }
        t
    })
}

/// The zones of a country given as ISO 3166-1 alpha-3 (OCPI's
/// `Location.country`) or alpha-2, any case; empty for an unknown code.
pub(crate) fn of_country(country: &str) -> &'static [&'static str] {
    let code = country.trim();
    let alpha2 = match code.len() {
        3 => isocountry::CountryCode::for_alpha3_caseless(code)
            .ok()
            .map(|c| c.alpha2()),
        2 => isocountry::CountryCode::for_alpha2_caseless(code)
            .ok()
            .map(|c| c.alpha2()),
        _ => None,
    };
    alpha2
        .and_then(|a| table().get(a))
        .map_or(&[], |v| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_tab_is_the_release_chrono_tz_bundles() {
        assert_eq!(
            chrono_tz::IANA_TZDB_VERSION,
            TZDB_RELEASE,
            "chrono-tz moved to another tz release: refresh ocpi/data/tzdata/zone.tab"
        );
    }

    #[test]
    fn every_zone_tab_zone_is_known_to_chrono_tz() {
        let t = table();
        assert!(t.len() > 240, "{} countries", t.len());
        for (cc, zones) in t {
            for z in zones {
                assert!(z.parse::<chrono_tz::Tz>().is_ok(), "{cc}: {z}");
            }
        }
    }

    #[test]
    fn countries_by_alpha3_and_alpha2() {
        assert_eq!(of_country("NLD"), ["Europe/Amsterdam"]);
        assert_eq!(of_country("nl"), ["Europe/Amsterdam"]);
        assert_eq!(of_country("BEL"), ["Europe/Brussels"]);
        // Büsingen am Hochrhein keeps Swiss rules: Germany has two rows
        assert_eq!(of_country("DEU"), ["Europe/Berlin", "Europe/Busingen"]);
        assert_eq!(of_country("ESP").len(), 3);
        assert!(of_country("XXX").is_empty());
        assert!(of_country("").is_empty());
    }
}
