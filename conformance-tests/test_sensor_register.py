"""The public sensor register (docs/spec.md, section 10): in the catalog (UDN-SENS-1), as the
residents' page `GET /sensors` in a real headless browser (UDN-SENS-2), as the SQL table
`sensor_register` (UDN-SENS-3), and the checks at startup (UDN-SENS-4).

A node the suite starts registers `udn_conformance.sensors.REGISTER`, and its texts are checked
word for word; against a running node (`UDN_FLIGHT_URL`) the register is whatever the node
holds (at least one sensor), and the page, the catalog and the table are checked against each
other.
"""

from __future__ import annotations

import json
import shutil
from urllib.parse import urljoin, urlparse

import pytest
import requests
from rdflib import Graph, Literal

from udn_conformance import rdf, shacl, sensors, wkb
from udn_conformance.client import query
from udn_conformance.node import run_expecting_exit, with_catalog

HTML = "text/html"


@pytest.fixture(scope="module")
def sensor_node(launcher, remote, generated, tmp_path_factory):
    """A node registering `sensors.REGISTER` (one of them feeding `readings`), or the remote
    node."""
    if remote is not None:
        return remote
    folder = tmp_path_factory.mktemp("sensor-register")
    config = folder / "node.toml"
    config.write_text(with_catalog(sensors.config_toml()), encoding="utf-8")
    return launcher.spawn(
        ["--config", str(config), "--table", f"{sensors.FED_TABLE}={generated['readings']}"]
    )


@pytest.fixture(scope="module")
def expected(remote):
    """The register as configured, by id (None for a remote node)."""
    return None if remote is not None else {e["id"]: e for e in sensors.REGISTER}


@pytest.fixture(scope="module")
def http(sensor_node) -> str:
    return rdf.http_url(sensor_node)


@pytest.fixture(scope="module")
def register_catalog(http):
    return rdf.catalog_of(http)


@pytest.fixture(scope="module")
def in_catalog(register_catalog) -> dict[str, sensors.CatalogSensor]:
    found = sensors.catalog_sensors(register_catalog.graph)
    assert found, "the catalog describes no sosa:Sensor: a node claiming Sensors registers its sensors"
    return found


@pytest.mark.requirement("UDN-SENS-1")
def test_every_sensor_is_described_in_the_catalog(in_catalog, expected, register_catalog):
    base = rdf.base_url(register_catalog.graph)
    for ident, sensor in in_catalog.items():
        assert str(sensor.iri).startswith(base + "/"), f"{sensor.iri} is not under the base URL {base}"
        assert sensor.labels and sensor.observes and sensor.purposes and sensor.legal_bases, ident
        assert sensor.contact_email or sensor.contact_url, f"{ident}: no e-mail address or web page to ask"
    if expected is None:
        return
    assert set(in_catalog) == set(expected)
    datasets = rdf.datasets_by_table(register_catalog.graph)
    for ident, entry in expected.items():
        sensor = in_catalog[ident]
        assert sensor.labels == sensors.literals(entry["name"]), ident
        assert sensor.purposes == sensors.literals(entry["purpose"]), ident
        assert sensor.legal_bases == sensors.literals(entry["legal_basis"]), ident
        assert sensor.retention == (sensors.literals(entry["retention"]) if "retention" in entry else frozenset())
        assert sensor.observes == set(entry["observes"]), ident
        assert sensor.owner == entry["owner"], ident
        assert sensor.personal_data is entry["personal_data"], ident
        assert sensor.neighbourhood == entry.get("neighbourhood"), ident
        assert sensor.contact_email == entry["contact"].get("email"), ident
        assert sensor.contact_url == entry["contact"].get("url"), ident
        lon, lat = sensors.point(sensor.wkt)
        assert (lon, lat) == pytest.approx((entry["longitude"], entry["latitude"]), abs=1e-9), ident
        if "dataset" in entry:
            assert sensor.feeds == datasets[entry["dataset"]], f"{ident} feeds {sensor.feeds}"
        else:
            assert sensor.feeds is None, ident


@pytest.mark.requirement("UDN-SENS-1")
def test_the_register_validates_and_the_shapes_catch_gaps(register_catalog, in_catalog, shacl_reports):
    report = shacl.validate(register_catalog.graph, "sensor register node")
    shacl_reports.append(report)
    assert not report.violations, "\n".join(report.summary_lines())
    # The shapes must see what a register leaves out: drop one sensor's legal basis and turn its
    # position into a line, in a copy.
    broken = Graph()
    for triple in register_catalog.graph:
        broken.add(triple)
    victim = next(iter(in_catalog.values()))
    broken.remove((victim.iri, sensors.UDN.legalBasis, None))
    geometry = next(broken.objects(victim.iri, sensors.GEO.hasGeometry))
    broken.set((geometry, sensors.GEO.asWKT, Literal("LINESTRING(1 2, 3 4)", datatype=sensors.GEO.wktLiteral)))
    found = {(r.path, r.focus) for r in shacl.validate(broken, "broken register").violations}
    assert any(path == "udn:legalBasis" for path, _ in found), found
    assert any("asWKT" in path for path, _ in found), found


@pytest.mark.requirement("UDN-SENS-1")
def test_the_register_answers_sparql(http, in_catalog):
    """The register is queryable on the SPARQL endpoint: one solution per sensor with its owner
    and personal-data statement."""
    sparql = """
        PREFIX sosa: <http://www.w3.org/ns/sosa/>
        PREFIX dct: <http://purl.org/dc/terms/>
        PREFIX foaf: <http://xmlns.com/foaf/0.1/>
        PREFIX udn: <https://w3id.org/udn/ns#>
        SELECT ?id ?owner ?personal WHERE {
          ?s a sosa:Sensor ; dct:identifier ?id ; dct:rightsHolder/foaf:name ?owner ;
             udn:processesPersonalData ?personal .
        }"""
    response = requests.get(
        f"{http}/sparql", params={"query": sparql}, headers={"Accept": "application/sparql-results+json"}, timeout=30
    )
    assert response.status_code == 200, response.text
    rows = {
        b["id"]["value"]: (b["owner"]["value"], b["personal"]["value"] == "true")
        for b in response.json()["results"]["bindings"]
    }
    assert rows == {i: (s.owner, s.personal_data) for i, s in in_catalog.items()}


@pytest.mark.requirement("UDN-SENS-3", "UDN-SENS-1")
def test_the_sql_table_agrees_with_the_catalog(sensor_node, in_catalog, register_catalog):
    with sensor_node.connect() as conn:
        table = query(
            conn,
            "SELECT id, name, neighbourhood, observes, owner, purpose, legal_basis, personal_data, "
            "retention, dataset, geometry FROM sensor_register",
        )
    assert table.schema.field("personal_data").type == "bool"
    rows = {r["id"]: r for r in table.to_pylist()}
    assert set(rows) == set(in_catalog), "the table and the catalog list different sensors"
    geometry = table.schema.field("geometry")
    meta = json.loads((geometry.metadata or {}).get(b"ARROW:extension:metadata", b"{}"))
    assert "CRS84" in json.dumps(meta) or "4326" in json.dumps(meta), f"geometry CRS metadata: {meta}"
    for ident, sensor in in_catalog.items():
        row = rows[ident]
        assert row["owner"] == sensor.owner
        assert row["personal_data"] is sensor.personal_data
        assert row["neighbourhood"] == sensor.neighbourhood
        assert Literal(row["purpose"]) in {Literal(str(p)) for p in sensor.purposes}, ident
        assert Literal(row["name"]) in {Literal(str(n)) for n in sensor.labels}, ident
        assert set(row["observes"].split(", ")) == sensor.observes, ident
        decoded = wkb.decode(row["geometry"])
        assert decoded["type"] == "Point", decoded
        assert tuple(decoded["coordinates"]) == pytest.approx(sensors.point(sensor.wkt), abs=1e-9)
        if sensor.feeds is not None:
            tables = {str(v): k for k, v in rdf.datasets_by_table(register_catalog.graph).items()}
            assert row["dataset"] == tables[str(sensor.feeds)], ident


def _page(http: str, **kwargs) -> requests.Response:
    response = requests.get(f"{http}/sensors", timeout=30, **kwargs)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"].split(";")[0].strip() == HTML
    return response


@pytest.mark.requirement("UDN-SENS-2")
@pytest.mark.parametrize(
    "ask, language",
    [
        ({"params": {"lang": "nl"}}, "nl"),
        ({"params": {"lang": "en"}}, "en"),
        ({"headers": {"Accept-Language": "en-GB,en;q=0.9,nl;q=0.5"}}, "en"),
        ({"headers": {"Accept-Language": "nl-NL, en;q=0.8"}}, "nl"),
        ({"params": {"lang": "nl"}, "headers": {"Accept-Language": "en"}}, "nl"),
    ],
)
def test_the_page_speaks_dutch_and_english(http, expected, in_catalog, ask, language):
    response = _page(http, **ask)
    assert response.headers.get("Content-Language") == language
    html = response.text
    assert f'<html lang="{language}"' in html
    for ident, sensor in in_catalog.items():
        assert f'id="sensor-{ident}"' in html, f"sensor {ident} is not on the {language} page"
    if expected is None:
        return
    other = "en" if language == "nl" else "nl"
    for entry in expected.values():
        for key in ("purpose", "legal_basis"):
            value = entry[key]
            assert _escaped(sensors.text_in(value, language)) in html, (entry["id"], key)
            if isinstance(value, dict):
                assert _escaped(value[other]) not in html, f"{entry['id']} {key} in {other} on the {language} page"


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.mark.requirement("UDN-SENS-2")
def test_the_page_loads_nothing_from_elsewhere(http):
    """The Content-Security-Policy forbids any other origin (a browser keeps to it), and the page
    refers to nothing it would fetch from elsewhere."""
    response = _page(http, params={"lang": "en"})
    policy = response.headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives.get("default-src") == ["'none'"], policy
    for directive, sources in directives.items():
        assert not any("://" in s or s == "*" for s in sources), f"{directive} allows {sources}"
    lowered = response.text.lower()
    for attribute in ("src=", "srcset=", "@import", "url("):
        assert attribute not in lowered, f"the page loads a resource ({attribute})"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven through ChromeDriver (Debian's chromium and chromium-driver;
    `.ci/run` installs them), with its network log."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail(
            "UDN-SENS-2 is checked in a real browser: install Chromium and ChromeDriver "
            "(Debian: apt-get install chromium chromium-driver)",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    profile = tmp_path_factory.mktemp("chromium-profile")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,1400",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _requests_made(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.mark.requirement("UDN-SENS-2")
@pytest.mark.parametrize("language", ["nl", "en"])
def test_the_page_in_a_browser(browser, http, in_catalog, expected, language, tmp_path_factory):
    from selenium.webdriver.common.by import By

    browser.get_log("performance")  # start the network log afresh
    browser.get(f"{http}/sensors?lang={language}")
    shot = tmp_path_factory.mktemp("screens") / f"sensors-{language}.png"
    browser.save_screenshot(str(shot))
    assert browser.find_element(By.TAG_NAME, "h1").is_displayed()
    assert browser.execute_script("return document.documentElement.lang") == language

    # Every sensor appears, under its neighbourhood, with every question answered.
    headings_of = browser.execute_script(
        "return [...document.querySelectorAll('article.sensor')].map(a => "
        "[a.id, a.closest('section').querySelector('h2').textContent, a.querySelectorAll('dt').length, "
        "a.querySelector('h3').textContent])"
    )
    shown = {row[0].removeprefix("sensor-"): row for row in headings_of}
    assert set(shown) == set(in_catalog), f"sensors on the page: {sorted(shown)}"
    for ident, sensor in in_catalog.items():
        _, heading, answers, name = shown[ident]
        if sensor.neighbourhood is not None:
            assert heading == sensor.neighbourhood, f"{ident} is under '{heading}'"
        assert answers >= 8, f"{ident} answers {answers} questions"
        article = browser.find_element(By.ID, f"sensor-{ident}")
        assert article.is_displayed()
        text = article.text
        assert sensor.owner in text, (ident, text)
        if expected is not None:
            entry = expected[ident]
            assert name == sensors.text_in(entry["name"], language)
            assert sensors.text_in(entry["purpose"], language) in text
            yes_no = {"nl": ("Ja", "Nee"), "en": ("Yes", "No")}[language]
            assert (yes_no[0] if entry["personal_data"] else yes_no[1]) in text.split("\n"), text

    # The map renders: a drawn figure with a dot per sensor, each linking to the sensor's entry.
    svg = browser.find_element(By.CSS_SELECTOR, "figure svg")
    assert svg.size["width"] > 200 and svg.size["height"] > 100, svg.size
    dots = browser.execute_script(
        "return [...document.querySelectorAll('figure svg a')].map(a => a.getAttribute('href'))"
    )
    assert sorted(dots) == sorted(f"#sensor-{i}" for i in in_catalog)

    # Every link works: anchors exist, links to the node answer 200, mail links are addresses.
    origin = "{0.scheme}://{0.netloc}".format(urlparse(http))
    links = browser.execute_script(
        "return [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"
    )
    assert links, "the page has no links"
    current = browser.current_url
    for href in set(links):
        if href.startswith("#"):
            assert browser.find_elements(By.ID, href[1:]), f"no element for the link {href}"
        elif href.startswith("mailto:"):
            assert "@" in href, href
        else:
            url = urljoin(current, href)
            if url.startswith(origin):
                status = requests.get(url, timeout=30).status_code
                assert status == 200, f"the link {href} answers {status}"
            else:
                contacts = {s.contact_url for s in in_catalog.values()}
                assert url in contacts, f"the page links to {url}, which is no sensor's contact page"

    # The language switch leads to the other language.
    other = {"nl": "en", "en": "nl"}[language]
    browser.find_element(By.CSS_SELECTOR, f'a[hreflang="{other}"]').click()
    assert browser.execute_script("return document.documentElement.lang") == other

    # No request left the node (the browser's own chrome:// pages are not network requests).
    made = [u for u in _requests_made(browser) if urlparse(u).scheme not in ("chrome", "chrome-untrusted")]
    assert any(u.startswith(origin) for u in made), f"the network log has no request to the node: {made}"
    outside = [u for u in made if not u.startswith(origin) and urlparse(u).scheme not in ("data", "about")]
    assert not outside, f"the page made the browser request {outside}"


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-SENS-2")
def test_a_node_without_sensors_says_so(launcher, generated, tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(with_catalog(""), encoding="utf-8")
    node = launcher.spawn(["--config", str(config), "--table", f"readings={generated['readings']}"])
    try:
        html = _page(node.http_url, params={"lang": "en"}).text
        assert "registered no sensors" in html and 'class="sensor"' not in html
        with node.connect() as conn:
            tables = query(conn, "SELECT table_name FROM information_schema.tables").column(0).to_pylist()
        assert "sensor_register" not in tables
    finally:
        node.stop()


def _without(entry: dict, *keys: str) -> dict:
    return {k: v for k, v in entry.items() if k not in keys}


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-SENS-4")
@pytest.mark.parametrize("missing", sensors.REQUIRED)
def test_an_entry_without_a_required_field_stops_the_startup(polder_bin, tmp_path, missing):
    register = [_without(sensors.REGISTER[2], missing), sensors.REGISTER[3]]
    config = tmp_path / "node.toml"
    config.write_text(with_catalog(sensors.config_toml(register)), encoding="utf-8")
    code, stderr = run_expecting_exit([str(polder_bin), "serve", "--config", str(config)], tmp_path)
    assert code != 0
    assert "noise-lombok" in stderr and missing in stderr, stderr[-2000:]
    assert "water-level-1" not in stderr, "a complete entry was named as faulty"


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-SENS-4")
def test_every_faulty_sensor_is_named_at_once(polder_bin, tmp_path):
    register = [
        _without(sensors.REGISTER[0], "owner"),
        _without(sensors.REGISTER[1], "legal_basis", "purpose"),
        sensors.REGISTER[2],
        {**sensors.REGISTER[3], "id": sensors.REGISTER[2]["id"]},
    ]
    config = tmp_path / "node.toml"
    config.write_text(
        with_catalog(sensors.config_toml(register)).replace(
            f'dataset = "{sensors.FED_TABLE}"', 'dataset = "no_such_table"'
        ),
        encoding="utf-8",
    )
    code, stderr = run_expecting_exit([str(polder_bin), "serve", "--config", str(config)], tmp_path)
    assert code != 0
    for needle in ("pm-oudegracht", "owner", "camera-vredenburg", "legal_basis", "purpose", "used twice", "no_such_table"):
        assert needle in stderr, f"{needle!r} not in: {stderr[-2000:]}"


@pytest.mark.beyond_spec("a check of the suite's own register writer")
def test_the_register_module_writes_valid_toml():
    """The suite's own writer: what it writes parses back to the register."""
    import tomllib

    assert tomllib.loads(sensors.config_toml())["sensors"] == sensors.REGISTER

