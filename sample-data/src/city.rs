//! The three sample cities: real names, municipality codes and centres, invented everything else.

use crate::Error;

/// Static description of one sample city.
pub(crate) struct City {
    /// Lower-case name used in paths and APIs, e.g. `amsterdam`.
    pub name: &'static str,
    /// Municipality name as CBS writes it.
    pub municipality: &'static str,
    /// CBS municipality code (`GM` + four digits).
    pub municipality_code: &'static str,
    /// Latitude and longitude (WGS84) of the city centre; the neighbourhood grid is centred here.
    pub centre: (f64, f64),
    /// Neighbourhood names by grid row (south to north) and column (west to east). Real district
    /// names, placed only roughly where they are.
    pub neighbourhood_names: [[&'static str; 4]; 3],
    /// Residents per km² in a typical neighbourhood.
    pub density: f64,
    /// Average household size.
    pub household_size: f64,
    /// Offset added to the national temperature (°C).
    pub temperature_offset: f64,
    /// Factor on the national wind speed (coastal cities are windier).
    pub wind_factor: f64,
    /// Factor on the regional background PM concentration.
    pub background_factor: f64,
    /// Whether the south-western neighbourhoods get a port contribution to PM and heavy traffic.
    pub port: bool,
    /// Factors on daily traffic volumes: car, bike, pedestrian, heavy.
    pub modal: [f64; 4],
    /// Speed limit on arterial roads (km/h); Amsterdam went to 30 on most of its roads in 2023.
    pub arterial_limit: f64,
    /// First sensor id, location id and Telraam segment id of this city.
    pub id_base: (i64, i64, i64),
}

static CITIES: [City; 3] = [
    City {
        name: "amsterdam",
        municipality: "Amsterdam",
        municipality_code: "GM0363",
        centre: (52.3731, 4.8926),
        neighbourhood_names: [
            [
                "Oud-West",
                "Grachtengordel-Zuid",
                "Weesperbuurt",
                "Oosterparkbuurt",
            ],
            [
                "Jordaan",
                "Burgwallen-Nieuwe Zijde",
                "Burgwallen-Oude Zijde",
                "Plantage",
            ],
            [
                "Westerpark",
                "Haarlemmerbuurt",
                "Nieuwendijk-Noord",
                "Oostelijke Eilanden",
            ],
        ],
        density: 14_000.0,
        household_size: 1.75,
        temperature_offset: 0.1,
        wind_factor: 1.05,
        background_factor: 1.0,
        port: false,
        modal: [0.7, 1.45, 1.25, 0.85],
        arterial_limit: 30.0,
        id_base: (71_000, 56_000, 9_000_410_000),
    },
    City {
        name: "utrecht",
        municipality: "Utrecht",
        municipality_code: "GM0344",
        centre: (52.0907, 5.1214),
        neighbourhood_names: [
            [
                "Kanaleneiland-Noord",
                "Dichterswijk",
                "Rivierenwijk",
                "Hoograven",
            ],
            ["Lombok", "Stationsgebied", "Binnenstad", "Oudwijk"],
            ["Pijlsweerd", "Vogelenbuurt", "Wittevrouwen", "Tuinwijk"],
        ],
        density: 10_500.0,
        household_size: 1.85,
        temperature_offset: 0.3,
        wind_factor: 0.9,
        background_factor: 1.04,
        port: false,
        modal: [0.8, 1.55, 1.0, 0.9],
        arterial_limit: 50.0,
        id_base: (64_000, 49_000, 9_000_520_000),
    },
    City {
        name: "rotterdam",
        municipality: "Rotterdam",
        municipality_code: "GM0599",
        centre: (51.9225, 4.4792),
        neighbourhood_names: [
            ["Katendrecht", "Kop van Zuid", "Noordereiland", "Feijenoord"],
            ["Delfshaven", "Cool", "Stadsdriehoek", "Kralingen-West"],
            ["Spangen", "Provenierswijk", "Agniesebuurt", "Oude Noorden"],
        ],
        density: 9_500.0,
        household_size: 1.9,
        temperature_offset: 0.4,
        wind_factor: 1.15,
        background_factor: 1.1,
        port: true,
        modal: [1.3, 0.75, 0.9, 1.5],
        arterial_limit: 50.0,
        id_base: (83_000, 61_000, 9_000_630_000),
    },
];

impl City {
    /// The city called `name` (exact, lower case), or [`Error::UnknownCity`].
    pub(crate) fn lookup(name: &str) -> Result<&'static City, Error> {
        CITIES
            .iter()
            .find(|city| city.name == name)
            .ok_or_else(|| Error::UnknownCity {
                name: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_public_list() {
        let names: Vec<_> = CITIES.iter().map(|city| city.name).collect();
        assert_eq!(names, crate::CITIES);
    }
}
