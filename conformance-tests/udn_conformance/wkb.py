"""Decoding Well-Known Binary geometries, to check a node's `geometry` column against GeoJSON."""

from __future__ import annotations

import math
import struct

_TYPES = {
    1: "Point",
    2: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def decode(data: bytes) -> dict:
    """WKB (ISO or EWKB, either byte order, Z/M dropped) -> a GeoJSON geometry dict."""
    geometry, end = _read(memoryview(bytes(data)), 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} trailing bytes after the geometry")
    return geometry


def _read(buf: memoryview, pos: int) -> tuple[dict, int]:
    order = "<" if buf[pos] == 1 else ">"
    pos += 1
    (code,) = struct.unpack_from(order + "I", buf, pos)
    pos += 4
    dims = 2
    if code & 0x20000000:  # EWKB SRID
        pos += 4
    if code & 0x80000000:
        dims += 1
    if code & 0x40000000:
        dims += 1
    code &= 0x0FFFFFFF
    if code >= 1000:
        dims += 2 if code >= 3000 else 1
        code %= 1000
    kind = _TYPES.get(code)
    if kind is None:
        raise ValueError(f"unknown WKB geometry type {code}")

    def point() -> list[float]:
        nonlocal pos
        values = struct.unpack_from(order + "d" * dims, buf, pos)
        pos += 8 * dims
        return [values[0], values[1]]

    def count() -> int:
        nonlocal pos
        (n,) = struct.unpack_from(order + "I", buf, pos)
        pos += 4
        return n

    if kind == "Point":
        coords = point()
        if all(math.isnan(c) for c in coords):
            return {"type": "Point", "coordinates": []}, pos
        return {"type": "Point", "coordinates": coords}, pos
    if kind == "LineString":
        return {"type": kind, "coordinates": [point() for _ in range(count())]}, pos
    if kind == "Polygon":
        rings = []
        for _ in range(count()):
            rings.append([point() for _ in range(count())])
        return {"type": kind, "coordinates": rings}, pos
    parts = []
    for _ in range(count()):
        part, pos = _read(buf, pos)
        parts.append(part)
    if kind == "GeometryCollection":
        return {"type": kind, "geometries": parts}, pos
    return {"type": kind, "coordinates": [p["coordinates"] for p in parts]}, pos


def same_geometry(a: dict, b: dict, tol: float = 1e-9) -> bool:
    """Whether two GeoJSON geometry dicts have the same type and coordinates (within tol)."""
    if a.get("type") != b.get("type"):
        return False
    if a["type"] == "GeometryCollection":
        ga, gb = a.get("geometries", []), b.get("geometries", [])
        return len(ga) == len(gb) and all(same_geometry(x, y, tol) for x, y in zip(ga, gb))
    return _same_coords(a.get("coordinates"), b.get("coordinates"), tol)


def _same_coords(a, b, tol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=0, abs_tol=tol)
    if isinstance(a, list) and isinstance(b, list):
        # GeoJSON positions may carry a third (altitude) value; compare x and y only.
        if a and isinstance(a[0], (int, float)):
            a, b = a[:2], b[:2]
        return len(a) == len(b) and all(_same_coords(x, y, tol) for x, y in zip(a, b))
    return a == b
