"""Catalog metadata through ADBC: GetObjects, GetTableSchema, GetTableTypes, GetInfo."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from udn_conformance.client import query_rows
from udn_conformance.compare import assert_same_rows, type_family

SCHEMA = "public"


def _catalog_entry(objects: list[dict], catalog: str) -> dict:
    names = [c["catalog_name"] for c in objects]
    matches = [c for c in objects if c["catalog_name"] == catalog]
    assert matches, f"catalog {catalog!r} not among {names}"
    assert len(matches) == 1, f"catalog {catalog!r} listed {len(matches)} times"
    return matches[0]


def _schema_entry(cat: dict, schema: str) -> dict:
    schemas = cat["catalog_db_schemas"] or []
    matches = [s for s in schemas if s["db_schema_name"] == schema]
    assert matches, f"schema {schema!r} not among {[s['db_schema_name'] for s in schemas]}"
    return matches[0]


def _tables(schema: dict) -> dict[str, dict]:
    return {t["table_name"]: t for t in schema["db_schema_tables"] or []}


@pytest.mark.requirement("UDN-FSQL-1", "UDN-FSQL-3", "UDN-DATA-1")
def test_get_objects_lists_catalog_schema_tables_and_columns(main_conn, catalog, main_tables):
    objects = main_conn.adbc_get_objects(depth="all").read_all().to_pylist()
    schema = _schema_entry(_catalog_entry(objects, catalog), SCHEMA)
    tables = _tables(schema)
    missing = sorted(set(main_tables) - set(tables))
    assert not missing, f"tables missing from GetObjects: {missing}; listed: {sorted(tables)}"

    for name, path in main_tables.items():
        expected = pq.read_schema(path)
        columns = tables[name]["table_columns"] or []
        assert [c["column_name"] for c in columns] == expected.names, f"columns of {name}"
        assert [c["ordinal_position"] for c in columns] == list(range(1, len(expected) + 1)), (
            f"ordinal positions of {name}"
        )
        assert tables[name]["table_type"], f"{name} has no table type"


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_objects_depth_catalogs(main_conn, catalog):
    objects = main_conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()
    _catalog_entry(objects, catalog)


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_objects_depth_db_schemas(main_conn, catalog):
    objects = main_conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
    _schema_entry(_catalog_entry(objects, catalog), SCHEMA)


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_objects_filters_by_table_name_pattern(main_conn, catalog):
    objects = (
        main_conn.adbc_get_objects(
            depth="tables", catalog_filter=catalog, table_name_filter="line%"
        )
        .read_all()
        .to_pylist()
    )
    cat = _catalog_entry(objects, catalog)
    names = sorted(
        t["table_name"]
        for s in cat["catalog_db_schemas"] or []
        for t in s["db_schema_tables"] or []
    )
    assert names == ["lineitem"]


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_objects_filters_by_column_name(main_conn, catalog, main_tables):
    objects = (
        main_conn.adbc_get_objects(
            depth="columns",
            catalog_filter=catalog,
            table_name_filter="orders",
            column_name_filter="o_order%",
        )
        .read_all()
        .to_pylist()
    )
    tables = _tables(_schema_entry(_catalog_entry(objects, catalog), SCHEMA))
    columns = [c["column_name"] for c in tables["orders"]["table_columns"]]
    expected = [n for n in pq.read_schema(main_tables["orders"]).names if n.startswith("o_order")]
    assert len(expected) > 1
    assert columns == expected


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_objects_unknown_catalog_is_empty(main_conn):
    objects = main_conn.adbc_get_objects(
        depth="tables", catalog_filter="no_such_catalog_x"
    ).read_all()
    assert objects.num_rows == 0


@pytest.mark.parametrize("table", ["lineitem", "orders", "readings"])
@pytest.mark.requirement("UDN-FSQL-3")
def test_get_table_schema_matches_the_file(main_conn, catalog, main_tables, table):
    schema = main_conn.adbc_get_table_schema(table, catalog_filter=catalog, db_schema_filter=SCHEMA)
    expected = pq.read_schema(main_tables[table])
    assert schema.names == expected.names
    for field in expected:
        got = schema.field(field.name).type
        assert type_family(got) == type_family(field.type), (
            f"{table}.{field.name}: {got} vs {field.type}"
        )
        if type_family(field.type) in ("decimal", "timestamp", "date"):
            assert got == field.type, f"{table}.{field.name}: {got} vs {field.type}"


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_table_schema_of_unknown_table_fails(main_conn, catalog):
    import adbc_driver_manager

    with pytest.raises(adbc_driver_manager.Error):
        main_conn.adbc_get_table_schema(
            "no_such_table", catalog_filter=catalog, db_schema_filter=SCHEMA
        )


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_table_types_covers_listed_tables(main_conn, catalog):
    types = main_conn.adbc_get_table_types()
    assert types, "no table types"
    assert len(types) == len(set(types)), f"duplicate table types {types}"
    objects = (
        main_conn.adbc_get_objects(depth="tables", catalog_filter=catalog).read_all().to_pylist()
    )
    used = {
        t["table_type"]
        for c in objects
        for s in c["catalog_db_schemas"] or []
        for t in s["db_schema_tables"] or []
    }
    assert used <= set(types), f"GetObjects uses table types {used - set(types)} not in {types}"


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_table_types_filter_in_get_objects(main_conn, catalog):
    types = main_conn.adbc_get_table_types()
    objects = (
        main_conn.adbc_get_objects(
            depth="tables", catalog_filter=catalog, table_types_filter=["NO_SUCH_TYPE"]
        )
        .read_all()
        .to_pylist()
    )
    listed = [
        t
        for c in objects
        for s in c["catalog_db_schemas"] or []
        for t in s["db_schema_tables"] or []
    ]
    assert listed == [], f"tables listed for an unknown table type: {listed} (types {types})"


@pytest.mark.requirement("UDN-FSQL-2")
def test_get_info_identifies_the_server(main_conn, remote):
    info = main_conn.adbc_get_info()
    assert info.get("vendor_name"), f"no vendor_name in {info}"
    assert info.get("vendor_version"), f"no vendor_version in {info}"
    assert info.get("vendor_arrow_version"), f"no vendor_arrow_version in {info}"
    if remote is None:
        assert "polder" in str(info["vendor_name"]).lower(), info


@pytest.mark.parametrize(
    "qualifier", ["{catalog}.public.", "public.", ""], ids=["catalog", "schema", "bare"]
)
@pytest.mark.requirement("UDN-DATA-1")
def test_qualified_and_unqualified_names_agree(main_conn, main_ref, catalog, qualifier):
    prefix = qualifier.format(catalog=catalog)
    sql = f"SELECT n_regionkey, count(*) AS n FROM {prefix}nation GROUP BY n_regionkey"
    assert_same_rows(
        query_rows(main_conn, sql),
        main_ref.rows("SELECT n_regionkey, count(*) AS n FROM nation GROUP BY n_regionkey"),
    )
