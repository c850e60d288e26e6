"""A SensorThings API (OGC, version 1.1) fixture server for the tests of Polder's SensorThings
source: Things, Locations, Datastreams and Observations modelled on RIVM's Samen Meten
(FROST-Server: numeric `@iot.id`s, `@iot.nextLink` paging with `$skip`, `$top` capped by the
server, `$filter`, `$expand` of related ids), and services that misbehave, by path prefix:

- `/v1.1/...`: a well-behaved service;
- `/slow/v1.1/...`: every page after the first takes `SLOW_S` seconds;
- `/broken-link/v1.1/...`: the first page's next link (within the service) leads to a 404;
- `/malformed/v1.1/...`: the second page is not JSON;
- `/escape/v1.1/...`: the first page's next link points at another host.

Every request is recorded (`requests`), so a test can show what the source received.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

MAX_TOP = 100  # the server's own page-size cap, as FROST has one
SLOW_S = 3.0
START = dt.datetime(2024, 11, 1, tzinfo=dt.timezone.utc)
HOURS = 72


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def build_data() -> dict[str, list[dict]]:
    """Three stations, each with a PM2.5 and a PM10 datastream of 72 hourly observations."""
    things, locations, datastreams, observations = [], [], [], []
    stations = [
        (1, "LTD_64946", "Utrecht Griftpark", 5.1272, 52.0995),
        (2, "LTD_65021", "Utrecht Kanaleneiland", 5.0985, 52.0704),
        (3, "NL10636", "Utrecht-Kardinaal de Jongweg", 5.1081, 52.1050),
    ]
    obs_id = 1000
    for thing_id, code, name, lon, lat in stations:
        things.append({"@iot.id": thing_id, "name": code, "description": name,
                       "properties": {"project": "Samen Meten", "owner": "RIVM" if code.startswith("NL") else "burger"}})
        locations.append({"@iot.id": 100 + thing_id, "name": code, "description": name,
                          "encodingType": "application/vnd.geo+json",
                          "location": {"type": "Point", "coordinates": [lon, lat]}})
        for k, (prop_id, prop) in enumerate([(1, "pm25"), (2, "pm10")]):
            ds_id = thing_id * 10 + k
            datastreams.append({
                "@iot.id": ds_id, "name": f"{code}-{prop}", "description": f"{prop} at {name}",
                "unitOfMeasurement": {"name": "microgram per cubic meter", "symbol": "ug/m3",
                                      "definition": "http://unitsofmeasure.org/ucum.html#ug/m3"},
                "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                "Thing": {"@iot.id": thing_id}, "Sensor": {"@iot.id": 500 + thing_id},
                "ObservedProperty": {"@iot.id": prop_id, "name": prop},
            })
            for h in range(HOURS):
                t = START + dt.timedelta(hours=h)
                value = round(5 + (ds_id % 7) + 10 * abs(((h + thing_id) % 24) - 12) / 12 + k * 6, 2)
                observations.append({
                    "@iot.id": obs_id, "phenomenonTime": _iso(t), "resultTime": _iso(t),
                    "result": value, "Datastream": {"@iot.id": ds_id},
                })
                obs_id += 1
    return {"Things": things, "Locations": locations, "Datastreams": datastreams, "Observations": observations}


# ---- a small $filter evaluator for what the source sends: comparisons joined by and/or ----

_TOKEN = re.compile(r"\s*(\(|\)|'(?:[^']|'')*'|[A-Za-z_/@.]+|[0-9T:.\-Z+]+)")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"cannot read $filter at {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _value(entity: dict, path: str):
    if path == "id":
        return entity["@iot.id"]
    if path == "Datastream/id":
        return entity["Datastream"]["@iot.id"]
    if path == "phenomenonTime":
        return entity["phenomenonTime"]
    raise ValueError(f"unsupported path {path}")


def _literal(token: str):
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    return token  # a date-time


def _compare(left, op: str, right) -> bool:
    if isinstance(right, str) and re.match(r"\d{4}-\d\d-\d\dT", right):
        left = dt.datetime.fromisoformat(str(left).replace("Z", "+00:00"))
        right = dt.datetime.fromisoformat(right.replace("Z", "+00:00"))
    return {"eq": left == right, "ne": left != right, "gt": left > right, "ge": left >= right,
            "lt": left < right, "le": left <= right}[op]


def make_filter(text: str):
    tokens = _tokens(text)
    pos = 0

    def expr():
        nonlocal pos
        node = term()
        while pos < len(tokens) and tokens[pos] in ("and", "or"):
            op = tokens[pos]
            pos += 1
            right = term()
            left = node
            node = (lambda e, l=left, r=right: l(e) and r(e)) if op == "and" else (lambda e, l=left, r=right: l(e) or r(e))
        return node

    def term():
        nonlocal pos
        if tokens[pos] == "(":
            pos += 1
            node = expr()
            assert tokens[pos] == ")", tokens[pos:]
            pos += 1
            return node
        path, op, lit = tokens[pos], tokens[pos + 1], _literal(tokens[pos + 2])
        pos += 3
        return lambda e: _compare(_value(e, path), op, lit)

    node = expr()
    if pos != len(tokens):
        raise ValueError(f"trailing $filter tokens {tokens[pos:]}")
    return node


class Handler(BaseHTTPRequestHandler):
    server: "SensorThingsServer"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.requests.append((parts.path, query))
        match = re.fullmatch(r"/(?:(slow|broken-link|malformed|escape)/)?v1\.1/(Things|Locations|Datastreams|Observations)", parts.path)
        if not match:
            return self._send(404, b'{"code": 404, "message": "Nothing here"}')
        mode, entity_set = match.group(1), match.group(2)
        skip = int(query.get("$skip", "0"))
        if mode == "slow" and skip > 0:
            time.sleep(SLOW_S)
        if mode == "malformed" and skip > 0:
            return self._send(200, b'{"value": [{"@iot.id": 1, "phenomenonTime": ')
        entities = self.server.data[entity_set]
        if "$filter" in query:
            try:
                keep = make_filter(query["$filter"])
                entities = [e for e in entities if keep(e)]
            except (ValueError, KeyError, IndexError, AssertionError) as e:
                return self._send(400, json.dumps({"code": 400, "message": str(e)}).encode())
        top = min(int(query.get("$top", MAX_TOP)), MAX_TOP)
        page = entities[skip: skip + top]
        if "$select" in query:
            # Only the selected properties (`id` is `@iot.id`); expanded entities stay.
            keep = {"@iot.id" if p == "id" else p for p in query["$select"].split(",")}
            page = [{k: v for k, v in e.items() if k in keep or k[:1].isupper()} for e in page]
        body: dict = {"value": page}
        if skip + top < len(entities):
            nxt = dict(query, **{"$skip": str(skip + top), "$top": str(top)})
            base = f"http://{self.headers['Host']}"
            if mode == "broken-link":
                body["@iot.nextLink"] = f"{base}{parts.path}/gone?{urlencode(nxt)}"
            elif mode == "escape":
                body["@iot.nextLink"] = f"http://elsewhere.invalid/v1.1/{entity_set}?{urlencode(nxt)}"
            else:
                body["@iot.nextLink"] = f"{base}{parts.path}?{urlencode(nxt)}"
        self._send(200, json.dumps(body).encode())


class SensorThingsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.data = build_data()
        self.requests: list[tuple[str, dict]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
