//! `GET /sensors`: the register as a plain, accessible HTML page for residents, in Dutch and
//! English, answering the communicatierichtlijn's questions for every sensor (what does it
//! measure, who owns it, why, on which legal basis, personal data, how long is data kept,
//! where to ask), listed per neighbourhood, with a map the node draws itself (inline SVG: no
//! tile server, no script, no request leaving the node; the page's Content-Security-Policy
//! forbids any).
//!
//! The language is `?lang=nl` or `?lang=en`, else the first of those in `Accept-Language`,
//! else Dutch.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{Register, Sensor};
use crate::iris::Iris;

/// The page's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Dutch.
    Nl,
    /// English.
    En,
}

impl Language {
    /// The language code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Nl => "nl",
            Self::En => "en",
        }
    }

    /// The language a request asks for: `lang`, else `Accept-Language`, else Dutch.
    pub fn negotiate(lang: Option<&str>, accept: Option<&str>) -> Self {
        let pick = |code: &str| match code.trim().split(['-', '_']).next() {
            Some(c) if c.eq_ignore_ascii_case("en") => Some(Self::En),
            Some(c) if c.eq_ignore_ascii_case("nl") => Some(Self::Nl),
            _ => None,
        };
        if let Some(language) = lang.and_then(pick) {
            return language;
        }
        let mut ranges: Vec<(f32, Self)> = accept
            .unwrap_or("")
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';');
                let language = pick(parts.next()?)?;
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q > 0.0).then_some((q, language))
            })
            .collect();
        // Stable: among equal weights the first listed wins.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranges.first().map_or(Self::Nl, |(_, l)| *l)
    }

    fn other(self) -> Self {
        match self {
            Self::Nl => Self::En,
            Self::En => Self::Nl,
        }
    }
}

/// The words of the page.
struct Words {
    title: &'static str,
    intro: &'static str,
    map: &'static str,
    map_description: &'static str,
    count: fn(usize, usize) -> String,
    no_sensors: &'static str,
    other_neighbourhood: &'static str,
    what: &'static str,
    kind: &'static str,
    who: &'static str,
    why: &'static str,
    legal_basis: &'static str,
    personal_data: &'static str,
    yes: &'static str,
    no: &'static str,
    retention: &'static str,
    not_stated: &'static str,
    where_: &'static str,
    ask: &'static str,
    data: &'static str,
    dataset: &'static str,
    description: &'static str,
    machine: &'static str,
    switch: &'static str,
}

const NL: Words = Words {
    title: "Sensoren in de openbare ruimte",
    intro: "Dit zijn de sensoren van dit dataknooppunt in de openbare ruimte: wat ze meten, van \
            wie ze zijn, waarom ze er staan, of ze persoonsgegevens verwerken en waar u met \
            vragen terechtkunt.",
    map: "Kaart van de sensoren",
    map_description: "Elke stip is een sensor; de lijst hieronder beschrijft ze allemaal. Rood: \
                      verwerkt persoonsgegevens; groen: geen persoonsgegevens.",
    count: |all, personal| {
        format!("{all} sensoren, waarvan {personal} persoonsgegevens verwerken.")
    },
    no_sensors: "Dit knooppunt heeft geen sensoren in de openbare ruimte geregistreerd.",
    other_neighbourhood: "Overige locaties",
    what: "Wat meet deze sensor?",
    kind: "Soort sensor",
    who: "Van wie is deze sensor?",
    why: "Waarom meet deze sensor?",
    legal_basis: "Wettelijke grondslag",
    personal_data: "Verwerkt deze sensor persoonsgegevens?",
    yes: "Ja",
    no: "Nee",
    retention: "Hoe lang worden de gegevens bewaard?",
    not_stated: "Niet opgegeven",
    where_: "Waar staat deze sensor?",
    ask: "Waar kan ik terecht met vragen?",
    data: "Welke gegevens levert deze sensor?",
    dataset: "tabel",
    description: "beschrijving",
    machine: "Machineleesbaar: het register staat ook in de catalogus van dit knooppunt \
              (SPARQL) en is de SQL-tabel sensor_register.",
    switch: "Nederlands",
};

const EN: Words = Words {
    title: "Sensors in public space",
    intro: "These are the sensors this data node operates in public space: what they measure, \
            who owns them, why they are there, whether they process personal data and where \
            to ask.",
    map: "Map of the sensors",
    map_description: "Each dot is a sensor; the list below describes them all. Red: processes \
                      personal data; green: no personal data.",
    count: |all, personal| format!("{all} sensors, of which {personal} process personal data."),
    no_sensors: "This node has registered no sensors in public space.",
    other_neighbourhood: "Other locations",
    what: "What does this sensor measure?",
    kind: "Kind of sensor",
    who: "Who owns this sensor?",
    why: "Why does this sensor measure?",
    legal_basis: "Legal basis",
    personal_data: "Does this sensor process personal data?",
    yes: "Yes",
    no: "No",
    retention: "How long is the data kept?",
    not_stated: "Not stated",
    where_: "Where is this sensor?",
    ask: "Where can I ask questions?",
    data: "Which data does this sensor feed?",
    dataset: "table",
    description: "description",
    machine: "Machine-readable: the register is also in this node's catalog (SPARQL) and is \
              the SQL table sensor_register.",
    switch: "English",
};

fn words(language: Language) -> &'static Words {
    match language {
        Language::Nl => &NL,
        Language::En => &EN,
    }
}

/// What the page needs besides the register.
#[derive(Debug, Clone)]
pub struct PageContext {
    /// The node's name (its SQL catalog).
    pub node: String,
    /// The catalog's IRIs, for links to each sensor's and dataset's description.
    pub iris: Iris,
}

/// The whole page in `language`.
pub fn render(register: &Register, context: &PageContext, language: Language) -> String {
    let w = words(language);
    let lang = language.code();
    let mut html = String::with_capacity(4096 + register.sensors.len() * 1500);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} – {node}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<p class=\"switch\"><a href=\"?lang={other}\" hreflang=\"{other}\" \
         lang=\"{other}\">{switch}</a></p>\n<h1>{title}</h1>\n<p>{intro}</p>\n",
        title = w.title,
        node = escape(&context.node),
        other = language.other().code(),
        switch = words(language.other()).switch,
        intro = w.intro,
    );
    let personal = register.sensors.iter().filter(|s| s.personal_data).count();
    if register.is_empty() {
        let _ = writeln!(html, "<p>{}</p>", w.no_sensors);
    } else {
        let _ = writeln!(
            html,
            "<p id=\"count\">{}</p>",
            (w.count)(register.sensors.len(), personal)
        );
    }
    html.push_str("</header>\n<main>\n");
    if !register.is_empty() {
        map(&mut html, register, w, language);
    }
    for (neighbourhood, sensors) in by_neighbourhood(register) {
        let heading = neighbourhood.unwrap_or(w.other_neighbourhood);
        let _ = writeln!(
            html,
            "<section class=\"neighbourhood\">\n<h2>{}</h2>",
            escape(heading)
        );
        for sensor in sensors {
            sensor_entry(&mut html, sensor, context, w, language);
        }
        html.push_str("</section>\n");
    }
    let _ = write!(
        html,
        "</main>\n<footer>\n<p>{}</p>\n</footer>\n</body>\n</html>\n",
        w.machine
    );
    html
}

/// Sensors grouped by neighbourhood, neighbourhoods in name order, those without one last.
fn by_neighbourhood(register: &Register) -> Vec<(Option<&str>, Vec<&Sensor>)> {
    let mut groups: BTreeMap<(bool, &str), Vec<&Sensor>> = BTreeMap::new();
    for sensor in &register.sensors {
        let key = match &sensor.neighbourhood {
            Some(n) => (false, n.as_str()),
            None => (true, ""),
        };
        groups.entry(key).or_default().push(sensor);
    }
    groups
        .into_iter()
        .map(|((none, name), sensors)| ((!none).then_some(name), sensors))
        .collect()
}

fn sensor_entry(
    html: &mut String,
    sensor: &Sensor,
    context: &PageContext,
    w: &Words,
    language: Language,
) {
    let lang = language.code();
    let _ = write!(
        html,
        "<article id=\"sensor-{id}\" class=\"sensor\">\n<h3>{name}</h3>\n<dl>\n",
        id = escape(&sensor.id),
        name = escape(sensor.name.get(lang)),
    );
    let mut row = |term: &str, value: &str| {
        let _ = writeln!(html, "<dt>{term}</dt><dd>{value}</dd>");
    };
    row(w.what, &escape(&sensor.observes.join(", ")));
    if let Some(kind) = &sensor.kind {
        row(w.kind, &escape(kind.get(lang)));
    }
    row(w.who, &escape(&sensor.owner));
    row(w.why, &escape(sensor.purpose.get(lang)));
    row(w.legal_basis, &escape(sensor.legal_basis.get(lang)));
    row(
        w.personal_data,
        &format!(
            "<strong class=\"personal-{}\">{}</strong>",
            sensor.personal_data,
            if sensor.personal_data { w.yes } else { w.no }
        ),
    );
    row(
        w.retention,
        &sensor
            .retention
            .as_ref()
            .map_or(w.not_stated.to_string(), |r| escape(r.get(lang))),
    );
    row(
        w.where_,
        &format!(
            "{}{:.5}, {:.5} (WGS84)",
            sensor
                .neighbourhood
                .as_deref()
                .map(|n| format!("{}, ", escape(n)))
                .unwrap_or_default(),
            sensor.latitude,
            sensor.longitude
        ),
    );
    let mut ask = escape(&sensor.contact.name);
    if let Some(email) = &sensor.contact.email {
        let _ = write!(
            ask,
            " – <a href=\"mailto:{0}\">{0}</a>",
            escape(email.trim_start_matches("mailto:"))
        );
    }
    if let Some(url) = &sensor.contact.url {
        let _ = write!(ask, " – <a href=\"{0}\">{0}</a>", escape(url));
    }
    row(w.ask, &ask);
    let mut data = String::new();
    if let Some(dataset) = &sensor.dataset {
        let _ = write!(
            data,
            "{} <code>{}.public.{}</code> (<a href=\"{}\">{}</a>), ",
            w.dataset,
            escape(&context.node),
            escape(dataset),
            escape(&path_of(&context.iris, &context.iris.dataset(dataset))),
            w.description,
        );
    }
    let _ = write!(
        data,
        "<a href=\"{}\" class=\"rdf\">{} (RDF)</a>",
        escape(&path_of(&context.iris, &context.iris.sensor(&sensor.id))),
        w.description
    );
    row(w.data, &data);
    html.push_str("</dl>\n</article>\n");
}

/// The path of a catalog IRI on this node, so links stay on the node whatever the base URL's
/// host (the catalog answers every IRI under the base URL by its path).
fn path_of(iris: &Iris, iri: &str) -> String {
    let rest = iri.strip_prefix(iris.base()).unwrap_or(iri);
    let base_path = iris
        .base()
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("");
    format!("{base_path}{rest}")
}

/// The map: the sensors' positions on an equirectangular projection around their mean
/// latitude (true to scale at city size), a dot per sensor linking to its entry, the
/// neighbourhoods' names at the middle of their sensors, and a scale bar.
fn map(html: &mut String, register: &Register, w: &Words, language: Language) {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 420.0;
    const MARGIN: f64 = 56.0;
    let lats = register.sensors.iter().map(|s| s.latitude);
    let lons = register.sensors.iter().map(|s| s.longitude);
    let (min_lat, max_lat) = bounds(lats);
    let (min_lon, max_lon) = bounds(lons);
    let mid_lat = ((min_lat + max_lat) / 2.0).to_radians();
    // Metres per degree, locally.
    let (my, mx) = (111_320.0, 111_320.0 * mid_lat.cos());
    let span_x = ((max_lon - min_lon) * mx).max(200.0);
    let span_y = ((max_lat - min_lat) * my).max(200.0);
    let scale = ((WIDTH - 2.0 * MARGIN) / span_x).min((HEIGHT - 2.0 * MARGIN) / span_y);
    let (cx, cy) = ((min_lon + max_lon) / 2.0, (min_lat + max_lat) / 2.0);
    let project = |lat: f64, lon: f64| {
        (
            WIDTH / 2.0 + (lon - cx) * mx * scale,
            HEIGHT / 2.0 - (lat - cy) * my * scale,
        )
    };
    let lang = language.code();
    let _ = write!(
        html,
        "<figure class=\"map\">\n<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-labelledby=\"map-title map-desc\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <title id=\"map-title\">{}</title>\n<desc id=\"map-desc\">{}</desc>\n\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" class=\"ground\"/>\n",
        w.map, w.map_description
    );
    for (neighbourhood, sensors) in by_neighbourhood(register) {
        let Some(name) = neighbourhood else { continue };
        let n = sensors.len() as f64;
        let lat = sensors.iter().map(|s| s.latitude).sum::<f64>() / n;
        let lon = sensors.iter().map(|s| s.longitude).sum::<f64>() / n;
        let (x, y) = project(lat, lon);
        let _ = writeln!(
            html,
            "<text x=\"{x:.1}\" y=\"{:.1}\" class=\"label\" text-anchor=\"middle\">{}</text>",
            y + 22.0,
            escape(name)
        );
    }
    for sensor in &register.sensors {
        let (x, y) = project(sensor.latitude, sensor.longitude);
        let _ = writeln!(
            html,
            "<a href=\"#sensor-{id}\" class=\"dot\"><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"7\" \
             class=\"personal-{personal}\"><title>{name}</title></circle></a>",
            id = escape(&sensor.id),
            personal = sensor.personal_data,
            name = escape(sensor.name.get(lang)),
        );
    }
    // A scale bar of a round length near a fifth of the width.
    let target = (WIDTH / 5.0) / scale;
    let metres = [
        50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0,
    ]
    .into_iter()
    .rfind(|m| *m <= target)
    .unwrap_or(50.0);
    let length = metres * scale;
    let label = if metres >= 1_000.0 {
        format!("{} km", metres / 1_000.0)
    } else {
        format!("{metres} m")
    };
    // Scale bar top left, north top right: outside the area the dots are drawn in.
    let _ = write!(
        html,
        "<line x1=\"16\" y1=\"30\" x2=\"{x2:.1}\" y2=\"30\" class=\"scale\"/>\n\
         <text x=\"16\" y=\"22\" class=\"label\">{label}</text>\n\
         <text x=\"{nx:.1}\" y=\"28\" class=\"label\" text-anchor=\"middle\">N ↑</text>\n\
         </svg>\n<figcaption>{}</figcaption>\n</figure>\n",
        w.map_description,
        x2 = 16.0 + length,
        nx = WIDTH - 24.0,
    );
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Text safe in HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:52rem;margin:0 auto;\
padding:1rem;line-height:1.5;color:#111;background:#fff}\
a{color:#0645ad}a:focus{outline:3px solid #f90}\
.switch{text-align:right}\
.map svg{width:100%;height:auto;border:1px solid #888}\
.ground{fill:#eef3ea}.label{font-size:13px;fill:#222}.scale{stroke:#222;stroke-width:3}\
circle{stroke:#fff;stroke-width:2}.personal-false{fill:#1f6f3f}.personal-true{fill:#b3261e}\
.sensor{border-top:1px solid #ccc;padding-top:.5rem}\
dt{font-weight:600;margin-top:.4rem}dd{margin-left:0}\
strong.personal-true{color:#b3261e}";

#[derive(Debug, Deserialize)]
struct PageQuery {
    lang: Option<String>,
}

/// The route `GET /sensors`.
pub fn router(register: Arc<Register>, context: PageContext) -> Router {
    Router::new()
        .route("/sensors", get(sensors_page))
        .with_state((register, Arc::new(context)))
}

async fn sensors_page(
    State((register, context)): State<(Arc<Register>, Arc<PageContext>)>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let language = Language::negotiate(query.lang.as_deref(), accept);
    let body = render(&register, &context, language);
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(language.code()),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    // Nothing the page shows comes from elsewhere, and nothing may.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::{SensorConfig, Text};

    fn register() -> Register {
        let config = |id: &str, neighbourhood: Option<&str>, personal: bool| SensorConfig {
            id: Some(id.into()),
            name: Some(Text::Plain(format!("Sensor <{id}>"))),
            latitude: Some(52.09),
            longitude: Some(5.12),
            neighbourhood: neighbourhood.map(str::to_string),
            observes: vec!["PM2.5".into()],
            owner: Some("Gemeente Utrecht".into()),
            purpose: Some(Text::ByLanguage(BTreeMap::from([
                ("nl".into(), "Luchtkwaliteit".into()),
                ("en".into(), "Air quality".into()),
            ]))),
            legal_basis: Some(Text::Plain("Wettelijke taak".into())),
            personal_data: Some(personal),
            contact: Some(crate::config::ContactConfig {
                name: None,
                email: Some("sensoren@example.org".into()),
                url: None,
            }),
            ..SensorConfig::default()
        };
        Register::resolve(
            &[
                config("b", Some("Wijk C"), false),
                config("a", None, true),
                config("c", Some("Binnenstad"), false),
            ],
            &[],
        )
        .unwrap()
    }

    fn context() -> PageContext {
        PageContext {
            node: "utrecht".into(),
            iris: Iris::new("https://data.example.org/node"),
        }
    }

    #[test]
    fn the_language_is_negotiated() {
        assert_eq!(Language::negotiate(Some("en"), Some("nl")), Language::En);
        assert_eq!(
            Language::negotiate(None, Some("en-GB,nl;q=0.5")),
            Language::En
        );
        assert_eq!(
            Language::negotiate(None, Some("de, en;q=0.4, nl;q=0.8")),
            Language::Nl
        );
        assert_eq!(Language::negotiate(Some("fr"), None), Language::Nl);
        assert_eq!(Language::negotiate(None, Some("en;q=0")), Language::Nl);
    }

    #[test]
    fn every_sensor_is_listed_per_neighbourhood_and_escaped() {
        let html = render(&register(), &context(), Language::En);
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        let binnenstad = html.find("<h2>Binnenstad</h2>").unwrap();
        let wijk = html.find("<h2>Wijk C</h2>").unwrap();
        let other = html.find("<h2>Other locations</h2>").unwrap();
        assert!(binnenstad < wijk && wijk < other, "{html}");
        for id in ["a", "b", "c"] {
            assert!(html.contains(&format!("<article id=\"sensor-{id}\"")));
            assert!(html.contains(&format!("href=\"#sensor-{id}\"")));
        }
        assert!(html.contains("Sensor &lt;a&gt;") && !html.contains("Sensor <a>"));
        assert!(html.contains("Air quality") && !html.contains("Luchtkwaliteit"));
        assert!(html.contains("3 sensors, of which 1 process personal data."));
        assert!(html.contains("href=\"/node/sensor/a\""), "{html}");
        assert!(html.contains("href=\"mailto:sensoren@example.org\""));
        let dutch = render(&register(), &context(), Language::Nl);
        assert!(dutch.contains("Luchtkwaliteit") && dutch.contains("Van wie is deze sensor?"));
    }
}
