"""The files a node under test serves, and the table names it must serve them under.

Everything here is generated deterministically (fixed seeds), so a vendor can prepare the same
files with `udn-conformance fixtures --out DIR` and load them into their own node.
The expected answers are never stored: tests compute them with DuckDB (or pyarrow / the json
module for formats DuckDB cannot read offline) over the very same files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TPCH_TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
TPCH_SCALE = "0.01"

# Rows in the `readings` table: large enough to need many record batches on the wire.
READINGS_ROWS = 250_000

STATIONS = ["ams-01", "ams-02", "utr-01", "utr-02", "rtm-01", "rtm-02", "ein-01", "dhg-01"]
CITIES = ["Amsterdam", "Utrecht", "Rotterdam", "Eindhoven", "Den Haag"]


def readings_table(rows: int = READINGS_ROWS) -> pa.Table:
    """Sensor readings: every common scalar type, with nulls in `value`."""
    rng = random.Random(20240601)
    start = dt.datetime(2024, 1, 1)
    ids, stations, ts, days, values, levels, oks = [], [], [], [], [], [], []
    for i in range(rows):
        t = start + dt.timedelta(seconds=37 * i)
        ids.append(i)
        stations.append(STATIONS[i % len(STATIONS)])
        ts.append(t)
        days.append(t.date())
        values.append(None if i % 97 == 0 else round(rng.uniform(0.0, 120.0), 3))
        levels.append(rng.randint(0, 50))
        oks.append(i % 3 != 0)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "station": pa.array(stations, pa.string()),
            "ts": pa.array(ts, pa.timestamp("us")),
            "day": pa.array(days, pa.date32()),
            "value": pa.array(values, pa.float64()),
            "level": pa.array(levels, pa.int32()),
            "ok": pa.array(oks, pa.bool_()),
        }
    )


def _station_rows(n: int = 500) -> list[dict]:
    rng = random.Random(7)
    rows = []
    for i in range(n):
        rows.append(
            {
                "station_id": 1000 + i,
                # Commas and quotes inside values exercise CSV quoting.
                "name": f'Meetpunt {i}, "{rng.choice(["Noord", "Zuid", "Oost", "West"])}"',
                "city": CITIES[i % len(CITIES)],
                "lat": round(rng.uniform(51.4, 52.5), 6),
                "lon": round(rng.uniform(4.2, 5.6), 6),
                "installed": (
                    dt.date(2015, 1, 1) + dt.timedelta(days=rng.randint(0, 3000))
                ).isoformat(),
                "active": "true" if rng.random() < 0.8 else "false",
                "pm10": "" if i % 11 == 0 else f"{rng.uniform(5, 60):.2f}",
            }
        )
    return rows


def _write_delimited(path: Path, rows: list[dict], sep: str) -> None:
    def cell(v: str | int | float) -> str:
        s = str(v)
        if sep == "," and any(c in s for c in ',"\n'):
            return '"' + s.replace('"', '""') + '"'
        return s

    cols = list(rows[0])
    lines = [sep.join(cols)]
    for r in rows:
        value_of = dict(r)
        if sep == "\t":
            # TSV has no quoting convention; keep tabs and quotes out of its values.
            value_of["name"] = str(value_of["name"]).replace('"', "").replace(",", "")
        lines.append(sep.join(cell(value_of[c]) for c in cols))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _event_rows(n: int = 2000) -> list[dict]:
    rng = random.Random(11)
    kinds = ["noise", "odour", "litter", "parking", "lighting"]
    return [
        {
            "event_id": i,
            "kind": kinds[i % len(kinds)],
            "severity": rng.randint(1, 5),
            "value": None if i % 13 == 0 else round(rng.uniform(-10, 10), 4),
            "reporter": f"user{rng.randint(1, 300)}",
        }
        for i in range(n)
    ]


def _measures_table(n: int = 20_000) -> pa.Table:
    rng = random.Random(3)
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "station": pa.array([STATIONS[i % 5] for i in range(n)], pa.string()),
            "value": pa.array([rng.uniform(0, 1000) for _ in range(n)], pa.float64()),
            "ts": pa.array(
                [dt.datetime(2023, 6, 1) + dt.timedelta(minutes=5 * i) for i in range(n)],
                pa.timestamp("ms"),
            ),
            "flag": pa.array([i % 4 == 0 for i in range(n)], pa.bool_()),
        }
    )


def _areas_geojson() -> dict:
    """Features of every common geometry type; properties become columns."""

    def square(x: float, y: float, s: float) -> list:
        return [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]

    geoms = [
        {"type": "Point", "coordinates": [5.1214, 52.0907]},
        {"type": "LineString", "coordinates": [[4.89, 52.37], [4.90, 52.38], [4.91, 52.375]]},
        {"type": "Polygon", "coordinates": [square(4.46, 51.91, 0.05), square(4.47, 51.92, 0.01)]},
        {
            "type": "MultiPolygon",
            "coordinates": [[square(5.47, 51.43, 0.02)], [square(5.50, 51.45, 0.01)]],
        },
        {"type": "MultiPoint", "coordinates": [[4.3, 52.07], [4.31, 52.08]]},
        {
            "type": "MultiLineString",
            "coordinates": [[[6.9, 50.9], [6.95, 50.95]], [[7.0, 51.0], [7.1, 51.1]]],
        },
    ]
    features = []
    for i, g in enumerate(geoms * 3):
        features.append(
            {
                "type": "Feature",
                "geometry": g,
                "properties": {
                    "area_id": i + 1,
                    "name": f"area {i + 1}",
                    "population": 1000 * (i + 1) + 17,
                    "density": round(1234.5 / (i + 1), 4),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _areas_rd_geojson() -> dict:
    """Features in the Dutch national grid (EPSG:28992), declared with a (pre-RFC 7946) `crs`."""
    features = []
    for i in range(6):
        x, y = 155_000.0 + 1_000 * i, 463_000.0 + 500 * i
        ring = [[x, y], [x + 250, y], [x + 250, y + 250], [x, y + 250], [x, y]]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"buurt_id": i + 1, "naam": f"buurt {i + 1}"},
            }
        )
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::28992"}},
        "features": features,
    }


# Generated files: table name -> location below the generated folder.
GENERATED = {
    "readings": "readings.parquet",
    "stations_csv": "stations.csv",
    "stations_tsv": "stations.tsv",
    "events_ndjson": "events.ndjson",
    "events_json": "events.json",
    "measures_arrow": "measures.arrow",
    "areas_geojson": "areas.geojson",
    "areas_rd_geojson": "areas_rd.geojson",
    "parts_dir": "parts",
    "parts_glob": "parts/part-*.csv",
}


# The list of tables a node under test serves, one `NAME=LOCATION` line each, beside the files.
TABLES_FILE = "tables.txt"


def write_table_list(folder: Path, tables: dict[str, Path]) -> None:
    lines = [f"{name}={location}" for name, location in tables.items()]
    (folder / TABLES_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def table_list(folder: Path) -> dict[str, str]:
    """`folder/tables.txt` as table -> location; empty when there is none."""
    path = folder / TABLES_FILE
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def generated_locations(out: Path) -> dict[str, Path]:
    return {name: out / rel for name, rel in GENERATED.items()}


def write_generated(out: Path) -> dict[str, Path]:
    """Write the generated conformance files into `out`; return table name -> location."""
    out.mkdir(parents=True, exist_ok=True)
    loc = generated_locations(out)

    if not loc["readings"].exists():
        pq.write_table(readings_table(), loc["readings"], row_group_size=50_000)

    stations = _station_rows()
    _write_delimited(loc["stations_csv"], stations, ",")
    _write_delimited(loc["stations_tsv"], stations, "\t")

    events = "".join(json.dumps(e) + "\n" for e in _event_rows())
    loc["events_ndjson"].write_text(events, encoding="utf-8")
    loc["events_json"].write_text(events, encoding="utf-8")

    measures = _measures_table()
    with pa.ipc.new_file(loc["measures_arrow"], measures.schema) as w:
        for batch in measures.to_batches(max_chunksize=4096):
            w.write_batch(batch)

    loc["areas_geojson"].write_text(json.dumps(_areas_geojson(), indent=1), encoding="utf-8")
    loc["areas_rd_geojson"].write_text(json.dumps(_areas_rd_geojson(), indent=1), encoding="utf-8")

    # The same CSV schema split over three files: served as a directory and as a glob.
    loc["parts_dir"].mkdir(exist_ok=True)
    rows = _station_rows(900)
    for k in range(3):
        _write_delimited(loc["parts_dir"] / f"part-{k}.csv", rows[k * 300 : (k + 1) * 300], ",")
    return loc


def tpch_generators(target_dir: Path | None) -> list[list[str]]:
    """Ways to make TPC-H parquet files here, best first: polder-bench, then tpchgen-cli.

    Both wrap the same generator crate (tpchgen), so they write the same rows.
    """
    found = []
    bench = target_dir / "debug" / "polder-bench" if target_dir is not None else None
    if bench is not None and bench.is_file() and os.access(bench, os.X_OK):
        found.append([str(bench), "tpch-gen", "--sf", TPCH_SCALE, "--out"])
    cli = shutil.which("tpchgen-cli") or _venv_bin("tpchgen-cli")
    if cli:
        found.append([cli, "parquet", "-s", TPCH_SCALE, "--output-dir"])
    return found


def _venv_bin(name: str) -> str | None:
    import sys

    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() else None


def write_tpch(out: Path, generators: list[list[str]]) -> dict[str, Path]:
    """Generate TPC-H SF 0.01 as `<out>/<table>.parquet` with the first generator that works."""
    out.mkdir(parents=True, exist_ok=True)
    files = {t: out / f"{t}.parquet" for t in TPCH_TABLES}
    failures = []
    for generator in generators:
        if all(f.is_file() for f in files.values()):
            break
        try:
            subprocess.run(generator + [str(out)], check=True, capture_output=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            failures.append(f"{' '.join(generator)}: {e}")
            continue
        if not all(f.is_file() for f in files.values()):
            failures.append(f"{' '.join(generator)}: did not write all of {TPCH_TABLES}")
    missing = [t for t, f in files.items() if not f.is_file()]
    if missing:
        raise RuntimeError(f"no TPC-H generator wrote {missing} in {out}: {failures}")
    return files


# Real open data in the shared folder (see shared/data/SOURCES.md): table name -> path below it.
SHARED_TABLES = {
    "lml_pm10": "lml_pm10_daily_nl/pm10.csv",
    # 23 monthly files as one table (a glob; directories are covered by the generated parts_dir).
    "koeln_weather": "koeln_weather_eddk/data/environment/weather-eddk/*.csv",
    "snuffelfiets": "snuffelfiets_utrecht/tests/data/test_data.csv",
    "koeln_population": "koeln_population_districts/data/structure/bevoelkerung/bevoelkerung.csv",
    "koeln_districts": "koeln_population_districts/data/geo-base/stadtbezirke/stadtbezirke.geojson",
    "koeln_segments": "koeln_traffic_load/data/traffic/load/street_segments.geojson",
    "cbs_buurten": "cbs_buurten_provincie_utrecht/demo/demodata/buurten.csv",
}

