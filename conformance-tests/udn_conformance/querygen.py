"""A seeded, grammar-based SQL query generator for differential testing.

`QueryGenerator(schema, seed).query()` returns a `Query`: an immutable tree of SELECTs, joins,
VALUES, CTEs, set operations, aggregates, window functions and `?` parameters over the tables
in `schema` (their real column types, read from the files). A tree renders to SQL for any
engine: table names unqualified (DuckDB, one node) or as `<node>.public.<table>` (a
coordinator, `polder sql`); parameters as `?` with their values in order, or inlined as
literals for clients that cannot bind them.

Every query is generated so that DuckDB and DataFusion must agree on its answer:

- types are never mixed implicitly (a comparison or a UNION column has one type class), no
  integer division, no casts of floats to text, `NULLS FIRST/LAST` always spelled out;
- a column is *noisy* when its value depends on summation order (sum/avg of floats, any avg);
  noisy values are compared with a tolerance and never filtered, grouped, joined, deduplicated
  or used to break ties;
- `ORDER BY` (and `LIMIT`, which only ever follows it) orders by a set of columns that is
  unique in the result, followed by the other columns, so the order is total;
  `row_number()` is only ordered by a unique key, too.

`shrinks(query)` yields smaller variants of a query, for the shrinker in `differential.py`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

# Type classes: values of one class compare and unify in both engines without surprises.
INT, DEC, FLOAT, STR, DATE, TS, TSTZ, BOOL, BIN, NULL = (
    "int", "dec", "float", "str", "date", "ts", "tstz", "bool", "bin", "null",
)
ORDERED = (INT, DEC, FLOAT, STR, DATE, TS, TSTZ)
NUMERIC = (INT, DEC, FLOAT)
SQL_TYPE = {
    INT: "BIGINT", DEC: "DECIMAL(15, 2)", FLOAT: "DOUBLE", STR: "VARCHAR", DATE: "DATE",
    TS: "TIMESTAMP", TSTZ: "TIMESTAMP WITH TIME ZONE", BOOL: "BOOLEAN", BIN: "BYTEA",
}


def type_class(t: pa.DataType) -> str | None:
    if pa.types.is_integer(t):
        return INT
    if pa.types.is_decimal(t):
        return DEC
    if pa.types.is_floating(t):
        return FLOAT
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return STR
    if pa.types.is_date(t):
        return DATE
    if pa.types.is_timestamp(t):
        return TSTZ if t.tz else TS
    if pa.types.is_boolean(t):
        return BOOL
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return BIN
    return None


# --- schema -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    cls: str
    samples: tuple = ()  # a few values of the column, for literals that select something
    nullable: bool = True


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # a unique key
    home: str  # the node that owns it in the federation
    rows: int
    weight: float = 1.0  # how often the generator picks it

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Schema:
    tables: dict[str, TableInfo]
    # Columns that join with matches: ((table, column), (table, column)).
    links: tuple[tuple[tuple[str, str], tuple[str, str]], ...]


def table_info(name: str, table: pa.Table, key: Sequence[str], home: str, weight: float = 1.0,
               samples: int = 8) -> TableInfo:
    """Column classes and sample values from the data itself."""
    columns = []
    for f in table.schema:
        cls = type_class(f.type)
        if cls is None:
            continue
        values = [v for v in table.column(f.name).unique().to_pylist() if v is not None]
        if cls in ORDERED:
            values.sort()
        if len(values) > samples:
            step = len(values) / samples
            values = [values[int(i * step)] for i in range(samples)]
        columns.append(Column(f.name, cls, tuple(values), table.column(f.name).null_count > 0))
    return TableInfo(name, tuple(columns), tuple(key), home, table.num_rows, weight)


# --- rendering --------------------------------------------------------------------------------


@dataclass
class Render:
    """How one engine spells a query: table names, and parameters bound or inlined."""

    qualify: Callable[[str], str] = lambda t: t
    inline: bool = False
    params: list = field(default_factory=list)


def literal(value: Any, cls: str) -> str:
    """`value` of class `cls` as a SQL literal both engines read with the same type."""
    if value is None:
        return "NULL" if cls == NULL else f"CAST(NULL AS {SQL_TYPE[cls]})"
    if cls == BOOL:
        return "TRUE" if value else "FALSE"
    if cls == INT:
        return str(int(value)) if value >= 0 else f"({int(value)})"
    if cls == DEC:
        return f"CAST('{value}' AS DECIMAL(15, 2))"
    if cls == FLOAT:
        return f"CAST({float(value)!r} AS DOUBLE)"
    if cls == STR:
        return "'" + str(value).replace("'", "''") + "'"
    if cls == DATE:
        return f"DATE '{value.isoformat()}'"
    if cls == TS:
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if cls == TSTZ:
        utc = value.astimezone(dt.UTC).replace(tzinfo=None)
        return f"CAST('{utc.isoformat(sep=' ')}+00:00' AS TIMESTAMP WITH TIME ZONE)"
    if cls == BIN:  # DataFusion only (inlined parameters for `polder sql`)
        return f"X'{bytes(value).hex()}'"
    raise ValueError(f"no literal for {cls}")


def inline_literal(value: Any, cls: str) -> str:
    """A bound parameter's value as DataFusion would type it (pyarrow's inferred type)."""
    if value is None:
        return "NULL"
    if cls == TSTZ and value.tzinfo is not None:
        utc = value.astimezone(dt.UTC).replace(tzinfo=None)
        return f"arrow_cast(TIMESTAMP '{utc.isoformat(sep=' ')}', 'Timestamp(µs, \"UTC\")')"
    if cls == DEC:
        exponent = value.as_tuple().exponent
        scale = max(0, -exponent)
        precision = max(len(value.as_tuple().digits), scale, 1)
        return f"CAST('{value}' AS DECIMAL({max(precision, scale + 1)}, {scale}))"
    return literal(value, cls)


class Node:
    """A piece of a query tree (immutable dataclasses)."""

    def shrinks(self) -> Iterator[Node]:
        """Smaller variants of this node alone (not of its children)."""
        return iter(())


# --- expressions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr(Node):
    cls: str

    noisy = False

    def sql(self, r: Render) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Col(Expr):
    rel: str | None
    name: str
    noisy_col: bool = False

    @property
    def noisy(self):
        return self.noisy_col

    def sql(self, r):
        return f"{self.rel}.{self.name}" if self.rel else self.name


@dataclass(frozen=True)
class Lit(Expr):
    value: Any

    def sql(self, r):
        return literal(self.value, self.cls)


@dataclass(frozen=True)
class Param(Expr):
    value: Any
    value_cls: str  # the class of the bound value (may differ: an int for a decimal column)

    def sql(self, r):
        if r.inline:
            return inline_literal(self.value, self.value_cls)
        r.params.append(self.value)
        return "?"

    def shrinks(self):
        if self.cls != NULL and self.value is not None and self.value_cls == self.cls \
                and self.cls != BIN:
            yield Lit(self.cls, self.value)


@dataclass(frozen=True)
class Arith(Expr):
    op: str
    left: Expr
    right: Expr

    @property
    def noisy(self):
        return self.left.noisy or self.right.noisy

    def sql(self, r):
        return f"({self.left.sql(r)} {self.op} {self.right.sql(r)})"

    def shrinks(self):
        yield self.left
        yield self.right


@dataclass(frozen=True)
class Func(Expr):
    name: str
    args: tuple[Expr, ...]

    @property
    def noisy(self):
        return any(a.noisy for a in self.args)

    def sql(self, r):
        return f"{self.name}({', '.join(a.sql(r) for a in self.args)})"

    def shrinks(self):
        for a in self.args:
            if a.cls == self.cls:
                yield a


@dataclass(frozen=True)
class Case(Expr):
    cond: Expr
    then: Expr
    other: Expr

    @property
    def noisy(self):
        return self.then.noisy or self.other.noisy

    def sql(self, r):
        return f"CASE WHEN {self.cond.sql(r)} THEN {self.then.sql(r)} ELSE {self.other.sql(r)} END"

    def shrinks(self):
        yield self.then
        yield self.other


@dataclass(frozen=True)
class Cmp(Expr):
    op: str
    left: Expr
    right: Expr

    def sql(self, r):
        return f"{self.left.sql(r)} {self.op} {self.right.sql(r)}"

    def shrinks(self):
        yield Lit(BOOL, True)


@dataclass(frozen=True)
class Logic(Expr):
    op: str  # AND, OR
    left: Expr
    right: Expr

    def sql(self, r):
        return f"({self.left.sql(r)} {self.op} {self.right.sql(r)})"

    def shrinks(self):
        yield self.left
        yield self.right


@dataclass(frozen=True)
class Not(Expr):
    arg: Expr

    def sql(self, r):
        return f"(NOT {self.arg.sql(r)})"

    def shrinks(self):
        yield self.arg


@dataclass(frozen=True)
class IsNull(Expr):
    arg: Expr
    negated: bool

    def sql(self, r):
        return f"{self.arg.sql(r)} IS {'NOT ' if self.negated else ''}NULL"

    def shrinks(self):
        yield Lit(BOOL, True)


@dataclass(frozen=True)
class InList(Expr):
    arg: Expr
    items: tuple[Expr, ...]
    negated: bool

    def sql(self, r):
        items = ", ".join(i.sql(r) for i in self.items)
        return f"{self.arg.sql(r)} {'NOT ' if self.negated else ''}IN ({items})"

    def shrinks(self):
        yield Lit(BOOL, True)
        if len(self.items) > 1:
            for i in range(len(self.items)):
                yield dataclasses.replace(self, items=self.items[:i] + self.items[i + 1:])


@dataclass(frozen=True)
class Between(Expr):
    arg: Expr
    low: Expr
    high: Expr
    negated: bool

    def sql(self, r):
        neg = "NOT " if self.negated else ""
        return f"{self.arg.sql(r)} {neg}BETWEEN {self.low.sql(r)} AND {self.high.sql(r)}"

    def shrinks(self):
        yield Lit(BOOL, True)


@dataclass(frozen=True)
class Like(Expr):
    arg: Expr
    pattern: Expr
    negated: bool

    def sql(self, r):
        return f"{self.arg.sql(r)} {'NOT ' if self.negated else ''}LIKE {self.pattern.sql(r)}"

    def shrinks(self):
        yield Lit(BOOL, True)


@dataclass(frozen=True)
class InQuery(Expr):
    arg: Expr
    query: Query
    negated: bool

    def sql(self, r):
        neg = "NOT " if self.negated else ""
        return f"{self.arg.sql(r)} {neg}IN ({self.query.sql(r)})"

    def shrinks(self):
        yield Lit(BOOL, True)


@dataclass(frozen=True)
class Agg(Expr):
    fn: str
    arg: Expr | None  # None: count(*)
    distinct: bool = False

    @property
    def noisy(self):
        return self.fn == "avg" or (self.fn == "sum" and self.arg.cls == FLOAT) or (
            self.arg is not None and self.arg.noisy)

    def sql(self, r):
        if self.arg is None:
            return "count(*)"
        return f"{self.fn}({'DISTINCT ' if self.distinct else ''}{self.arg.sql(r)})"

    def shrinks(self):
        if self.fn != "count" or self.arg is not None:
            yield Agg(INT, "count", None)


@dataclass(frozen=True)
class OrderKey(Node):
    expr: Expr
    desc: bool
    nulls_first: bool

    def sql(self, r):
        return (f"{self.expr.sql(r)} {'DESC' if self.desc else 'ASC'} "
                f"NULLS {'FIRST' if self.nulls_first else 'LAST'}")


@dataclass(frozen=True)
class Window(Expr):
    fn: str  # row_number, rank, dense_rank, sum, count, min, max
    arg: Expr | None
    partition: tuple[Expr, ...]
    order: tuple[OrderKey, ...]

    @property
    def noisy(self):
        return self.fn == "sum" and self.arg.cls == FLOAT

    def sql(self, r):
        arg = "" if self.arg is None else self.arg.sql(r)
        if self.fn == "count" and self.arg is None:
            arg = "*"
        over = []
        if self.partition:
            over.append("PARTITION BY " + ", ".join(p.sql(r) for p in self.partition))
        if self.order:
            over.append("ORDER BY " + ", ".join(o.sql(r) for o in self.order))
        return f"{self.fn}({arg}) OVER ({' '.join(over)})"

    def shrinks(self):
        if self.partition:
            yield dataclasses.replace(self, partition=())
        if self.fn in ("sum", "count", "min", "max") and self.order:
            yield dataclasses.replace(self, order=())


# --- relations and queries --------------------------------------------------------------------


@dataclass(frozen=True)
class OutCol:
    """A column a relation offers: `rel.name`."""

    rel: str
    name: str
    cls: str
    noisy: bool = False
    samples: tuple = ()


@dataclass(frozen=True)
class Rel(Node):
    alias: str

    def columns(self) -> list[OutCol]:
        raise NotImplementedError

    def keys(self) -> list[tuple[str, ...]]:
        """Sets of `rel.name` columns unique in this relation."""
        return []

    def tables(self) -> set[str]:
        return set()


@dataclass(frozen=True)
class TableRef(Rel):
    table: TableInfo

    def columns(self):
        return [OutCol(self.alias, c.name, c.cls, False, c.samples) for c in self.table.columns]

    def keys(self):
        return [tuple(f"{self.alias}.{k}" for k in self.table.key)]

    def tables(self):
        return {self.table.name}

    def sql(self, r):
        return f"{r.qualify(self.table.name)} AS {self.alias}"


@dataclass(frozen=True)
class ValuesRel(Rel):
    names: tuple[str, ...]
    classes: tuple[str, ...]
    rows: tuple[tuple[Expr, ...], ...]

    def columns(self):
        return [OutCol(self.alias, n, c, False,
                       tuple(row[i].value for row in self.rows
                             if isinstance(row[i], Lit) and row[i].value is not None))
                for i, (n, c) in enumerate(zip(self.names, self.classes))]

    def sql(self, r):
        rows = ", ".join("(" + ", ".join(v.sql(r) for v in row) + ")" for row in self.rows)
        return f"(VALUES {rows}) AS {self.alias}({', '.join(self.names)})"

    def shrinks(self):
        if len(self.rows) > 1:
            for i in range(len(self.rows)):
                yield dataclasses.replace(self, rows=self.rows[:i] + self.rows[i + 1:])


@dataclass(frozen=True)
class Derived(Rel):
    query: Query

    def columns(self):
        return [dataclasses.replace(c, rel=self.alias) for c in self.query.columns()]

    def keys(self):
        return [tuple(f"{self.alias}.{k}" for k in key) for key in self.query.keys()]

    def tables(self):
        return self.query.tables()

    def sql(self, r):
        return f"({self.query.sql(r)}) AS {self.alias}"


@dataclass(frozen=True)
class CteRef(Rel):
    name: str
    query: Query  # the CTE's definition (for its columns)

    def columns(self):
        return [dataclasses.replace(c, rel=self.alias) for c in self.query.columns()]

    def keys(self):
        return [tuple(f"{self.alias}.{k}" for k in key) for key in self.query.keys()]

    def tables(self):
        return self.query.tables()

    def sql(self, r):
        return f"{self.name} AS {self.alias}"


@dataclass(frozen=True)
class Join(Rel):
    left: Rel
    right: Rel
    kind: str  # INNER, LEFT, CROSS
    on: Expr | None

    def columns(self):
        return self.left.columns() + self.right.columns()

    def keys(self):
        # A left and a right key together are unique in an inner or cross join, and in a left
        # join too: an unmatched left row has NULLs for the right key and is unique by its own.
        return [lk + rk for lk in self.left.keys() for rk in self.right.keys()]

    def tables(self):
        return self.left.tables() | self.right.tables()

    def sql(self, r):
        if self.kind == "CROSS":
            return f"{self.left.sql(r)} CROSS JOIN {self.right.sql(r)}"
        return f"{self.left.sql(r)} {self.kind} JOIN {self.right.sql(r)} ON {self.on.sql(r)}"

    def shrinks(self):
        yield self.left
        yield self.right
        if self.kind == "LEFT":
            yield dataclasses.replace(self, kind="INNER")


class Query(Node):
    def columns(self) -> list[OutCol]:
        raise NotImplementedError

    def keys(self) -> list[tuple[str, ...]]:
        raise NotImplementedError

    def tables(self) -> set[str]:
        raise NotImplementedError

    def sql(self, r: Render) -> str:
        raise NotImplementedError

    @property
    def ordered(self) -> bool:
        return bool(self.order_by)


@dataclass(frozen=True)
class Select(Query):
    items: tuple[tuple[Expr, str], ...]
    source: Rel | None = None
    where: Expr | None = None
    group_by: tuple[Expr, ...] = ()
    having: Expr | None = None
    distinct: bool = False
    order_by: tuple[OrderKey, ...] = ()
    limit: int | None = None
    ctes: tuple[tuple[str, Query], ...] = ()
    out_keys: tuple[tuple[str, ...], ...] = ()  # unique sets of output column names

    def columns(self):
        out = []
        for expr, alias in self.items:
            samples = ()
            if isinstance(expr, Col) and self.source is not None:
                for c in self.source.columns():
                    if c.rel == expr.rel and c.name == expr.name:
                        samples = c.samples
            out.append(OutCol("", alias, expr.cls, expr.noisy, samples))
        return out

    def keys(self):
        return [tuple(k) for k in self.out_keys]

    def tables(self):
        found = set(self.source.tables()) if self.source else set()
        for _, q in self.ctes:
            found |= q.tables()
        for node in walk(self):
            if isinstance(node, InQuery):
                found |= node.query.tables()
        return found

    def sql(self, r):
        parts = []
        if self.ctes:
            parts.append("WITH " + ", ".join(f"{n} AS ({q.sql(r)})" for n, q in self.ctes))
        items = ", ".join(f"{e.sql(r)} AS {a}" for e, a in self.items)
        parts.append(f"SELECT {'DISTINCT ' if self.distinct else ''}{items}")
        if self.source is not None:
            parts.append(f"FROM {self.source.sql(r)}")
        if self.where is not None:
            parts.append(f"WHERE {self.where.sql(r)}")
        if self.group_by:
            parts.append("GROUP BY " + ", ".join(g.sql(r) for g in self.group_by))
        if self.having is not None:
            parts.append(f"HAVING {self.having.sql(r)}")
        if self.order_by:
            parts.append("ORDER BY " + ", ".join(o.sql(r) for o in self.order_by))
        if self.limit is not None:
            parts.append(f"LIMIT {self.limit}")
        return " ".join(parts)

    def shrinks(self):
        if self.limit is not None:
            yield dataclasses.replace(self, limit=None)
        if self.order_by:
            yield dataclasses.replace(self, order_by=(), limit=None)
        if self.where is not None:
            yield dataclasses.replace(self, where=None)
        if self.having is not None:
            yield dataclasses.replace(self, having=None)
        if self.distinct:
            yield dataclasses.replace(self, distinct=False)
        if len(self.items) > 1:
            for i in range(len(self.items)):
                alias = self.items[i][1]
                yield dataclasses.replace(
                    self, items=self.items[:i] + self.items[i + 1:],
                    order_by=tuple(o for o in self.order_by
                                   if not (isinstance(o.expr, Col) and o.expr.name == alias)),
                )
        for i in range(len(self.ctes)):
            yield dataclasses.replace(self, ctes=self.ctes[:i] + self.ctes[i + 1:])
        if self.group_by and not any(isinstance(e, Agg) for e, _ in self.items):
            yield dataclasses.replace(self, group_by=(), having=None, distinct=True)


@dataclass(frozen=True)
class SetOp(Query):
    op: str  # UNION ALL, UNION, INTERSECT, EXCEPT
    left: Query
    right: Query
    order_by: tuple[OrderKey, ...] = ()
    limit: int | None = None

    def columns(self):
        return [dataclasses.replace(c, samples=()) for c in self.left.columns()]

    def keys(self):
        if self.op == "UNION ALL":
            return []
        return [tuple(c.name for c in self.columns())]

    def tables(self):
        return self.left.tables() | self.right.tables()

    def sql(self, r):
        text = f"{self.left.sql(r)} {self.op} {self.right.sql(r)}"
        if self.order_by:
            text += " ORDER BY " + ", ".join(o.sql(r) for o in self.order_by)
        if self.limit is not None:
            text += f" LIMIT {self.limit}"
        return text

    def shrinks(self):
        if self.limit is not None:
            yield dataclasses.replace(self, limit=None)
        if self.order_by:
            yield dataclasses.replace(self, order_by=(), limit=None)
        if self.op != "UNION ALL":
            yield dataclasses.replace(self, op="UNION ALL")
        yield dataclasses.replace(self.left, order_by=self.order_by, limit=self.limit)
        yield dataclasses.replace(self.right, order_by=self.order_by, limit=self.limit)


@dataclass(frozen=True)
class Raw(Query):
    """A hand-written query (a reproducer): `{table}` placeholders name the tables."""

    text: str
    table_names: tuple[str, ...]
    order_by: tuple = ()

    def columns(self):
        return []

    def keys(self):
        return []

    def tables(self):
        return set(self.table_names)

    def sql(self, r):
        return self.text.format(**{t: r.qualify(t) for t in self.table_names})


# --- tree walking, for the shrinker -----------------------------------------------------------


def _children(node: Node) -> Iterator[tuple[str, int | None, Node]]:
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, Node):
            yield f.name, None, value
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if isinstance(item, Node):
                    yield f.name, i, item
                elif isinstance(item, tuple):  # (expr, alias) items, (name, query) ctes, rows
                    for j, sub in enumerate(item):
                        if isinstance(sub, Node):
                            yield f.name, (i, j), sub


def _replace_child(node: Node, name: str, index, new: Node) -> Node:
    value = getattr(node, name)
    if index is None:
        return dataclasses.replace(node, **{name: new})
    if isinstance(index, tuple):
        i, j = index
        inner = list(value[i])
        inner[j] = new
        items = list(value)
        items[i] = tuple(inner)
        return dataclasses.replace(node, **{name: tuple(items)})
    items = list(value)
    items[index] = new
    return dataclasses.replace(node, **{name: tuple(items)})


def walk(node: Node) -> Iterator[Node]:
    yield node
    for _, _, child in _children(node):
        yield from walk(child)


def shrinks(node: Node) -> Iterator[Node]:
    """Every variant of `node` with one of its nodes (itself included) made smaller."""
    yield from node.shrinks()
    for name, index, child in _children(node):
        for smaller in shrinks(child):
            if isinstance(child, Expr) and not isinstance(smaller, Expr):
                continue
            if isinstance(child, Query) != isinstance(smaller, Query):
                continue
            yield _replace_child(node, name, index, smaller)


def size(node: Node) -> int:
    return sum(1 for _ in walk(node))


# --- parameter values -------------------------------------------------------------------------


def param_value(rng: random.Random, cls: str, samples: Sequence = ()) -> Any:
    """A value of class `cls` as a client binds it (its Python type decides the Arrow type)."""
    if samples and rng.random() < 0.8:
        value = rng.choice(list(samples))
        if cls == TSTZ and isinstance(value, dt.datetime):
            # Bound in another zone sometimes: the same instant, a different offset.
            zone = rng.choice([dt.UTC, dt.timezone(dt.timedelta(hours=2)),
                               dt.timezone(dt.timedelta(hours=-5, minutes=-30))])
            return value.astimezone(zone)
        return value
    return {
        INT: lambda: rng.randint(-3, 30),
        DEC: lambda: decimal.Decimal(rng.randint(-500, 9000)) / 100,
        FLOAT: lambda: rng.choice([0.5, -2.25, 3.0, 17.125]),
        STR: lambda: rng.choice(["a", "ams-01", "x_y", "", "Zeta"]),
        DATE: lambda: dt.date(2024, 3, 31) + dt.timedelta(days=rng.randint(-3, 3)),
        TS: lambda: dt.datetime(2024, 3, 31, rng.randint(0, 23), 30, 0, rng.choice([0, 123456])),
        TSTZ: lambda: dt.datetime(2024, 3, 31, rng.randint(0, 23), 15,
                                  tzinfo=dt.timezone(dt.timedelta(hours=rng.choice([0, 2])))),
        BOOL: lambda: rng.random() < 0.5,
        BIN: lambda: bytes([rng.randint(0, 3), rng.randint(0, 255)]),
    }[cls]()


# --- the generator ----------------------------------------------------------------------------


@dataclass
class Features:
    """What the generator may use (all by default)."""

    params: bool = True
    windows: bool = True
    set_ops: bool = True
    ctes: bool = True
    values: bool = True
    joins: bool = True
    subqueries: bool = True


class QueryGenerator:
    def __init__(self, schema: Schema, seed: int, features: Features | None = None):
        self.schema = schema
        self.rng = random.Random(seed)
        self.features = features or Features()
        self._names = 0
        self._params_allowed = True

    def fresh(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # -- top level --

    def query(self) -> Query:
        """One top-level query."""
        self._names = 0
        kind = self.rng.choices(
            ["plain", "aggregate", "window", "setop", "params", "values"],
            weights=[30, 30, 12 if self.features.windows else 0, 12 if self.features.set_ops else 0,
                     6 if self.features.params else 0, 6 if self.features.values else 0],
        )[0]
        ctes: tuple = ()
        if self.features.ctes and kind in ("plain", "aggregate", "window") and self.chance(0.2):
            name = self.fresh("w")
            ctes = ((name, self.select(depth=1, kind=self.rng.choice(["plain", "aggregate"]))),)
        if kind == "setop":
            q = self.set_op(depth=0)
        elif kind == "params":
            q = self.bare_params()
        elif kind == "values":
            q = self.select(depth=0, kind="plain", source=self.values_rel())
        else:
            q = self.select(depth=0, kind=kind, ctes=ctes)
        if not q.order_by and self.chance(0.4):
            q = self.order(q, limit=self.chance(0.7))
        return q

    def bare_params(self) -> Select:
        n = self.rng.choice([1, 1, 2, 3])
        items = []
        for i in range(n):
            cls = self.rng.choice([INT, DEC, FLOAT, STR, DATE, TS, TSTZ, BOOL, BIN, NULL])
            value = None if cls == NULL else param_value(self.rng, cls)
            items.append((Param(cls, value, cls), f"c{i}"))
        return Select(tuple(items), out_keys=((),))

    # -- relations --

    def base_table(self) -> TableInfo:
        tables = list(self.schema.tables.values())
        return self.rng.choices(tables, weights=[t.weight for t in tables])[0]

    def source(self, depth: int, ctes: tuple = ()) -> Rel:
        roll = self.rng.random()
        if ctes and roll < 0.5:
            name, q = self.rng.choice(list(ctes))
            rel: Rel = CteRef(self.fresh("t"), name, q)
        elif self.features.subqueries and depth < 2 and roll < 0.15:
            rel = Derived(self.fresh("t"), self.select(depth + 1,
                                                       kind=self.rng.choice(["plain", "aggregate",
                                                                             "window"])))
        elif self.features.values and roll < 0.2:
            rel = self.values_rel()
        else:
            rel = TableRef(self.fresh("t"), self.base_table())
        if self.features.joins and self.chance(0.45):
            rel = self.join(rel, depth)
            if self.chance(0.2):
                rel = self.join(rel, depth)
        return rel

    def join(self, left: Rel, depth: int) -> Rel:
        left_cols = left.columns()
        # A table linked to one of the left side's columns, when there is one.
        options = []
        for (ta, ca), (tb, cb) in self.schema.links:
            for (t1, c1), (t2, c2) in (((ta, ca), (tb, cb)), ((tb, cb), (ta, ca))):
                for lc in left_cols:
                    if lc.name == c1 and t1 in left.tables() and not lc.noisy:
                        options.append((lc, t2, c2))
        kind = self.rng.choices(["INNER", "LEFT", "CROSS"], weights=[6, 4, 1])[0]
        if options and kind != "CROSS":
            lc, table, column = self.rng.choice(options)
            right = TableRef(self.fresh("t"), self.schema.tables[table])
            rc = right.table.column(column)
            on: Expr = Cmp(BOOL, "=", Col(lc.cls, lc.rel, lc.name),
                           Col(rc.cls, right.alias, rc.name))
            if self.chance(0.3):
                on = Logic(BOOL, "AND", on, self.predicate(right.columns(), depth + 1))
            return Join(self.fresh("j"), left, right, kind, on)
        if max((self.schema.tables[t].rows for t in left.tables()), default=0) > 2000:
            return left  # no join without a link: the answer could be too big to compare
        if kind == "CROSS" or not options:
            small = [t for t in self.schema.tables.values() if t.rows <= 30]
            if self.features.values and self.chance(0.5) or not small:
                right = self.values_rel()
            else:
                right = TableRef(self.fresh("t"), self.rng.choice(small))
            if kind == "CROSS":
                return Join(self.fresh("j"), left, right, "CROSS", None)
            same = [(a, b) for a in left_cols for b in right.columns()
                    if a.cls == b.cls and a.cls in (INT, STR, DATE) and not a.noisy]
            if not same:
                return Join(self.fresh("j"), left, right, "CROSS", None)
            a, b = self.rng.choice(same)
            return Join(self.fresh("j"), left, right, kind,
                        Cmp(BOOL, "=", Col(a.cls, a.rel, a.name), Col(b.cls, b.rel, b.name)))
        raise AssertionError("unreachable")

    def values_rel(self) -> ValuesRel:
        n_cols = self.rng.randint(1, 3)
        classes = tuple(self.rng.choice([INT, INT, STR, DEC, DATE, BOOL]) for _ in range(n_cols))
        names = tuple(f"v{i}" for i in range(n_cols))
        rows = []
        for r in range(self.rng.randint(1, 5)):
            row = []
            for cls in classes:
                if r > 0 and self.chance(0.15):
                    row.append(Lit(cls, None))
                elif self.features.params and self.chance(0.1):
                    row.append(Param(cls, param_value(self.rng, cls, self._pool(cls)), cls))
                else:
                    row.append(Lit(cls, param_value(self.rng, cls, self._pool(cls))))
            rows.append(tuple(row))
        return ValuesRel(self.fresh("t"), names, classes, tuple(rows))

    def _pool(self, cls: str) -> tuple:
        """Sample values of a class from the schema's columns, so VALUES meet real data."""
        pool = []
        for t in self.schema.tables.values():
            for c in t.columns:
                if c.cls == cls and c.name.endswith(("key", "k", "label", "nation", "name",
                                                     "day", "orderdate", "mktsegment")):
                    pool.extend(c.samples[:4])
        return tuple(pool)

    # -- expressions --

    def value_of(self, col: OutCol) -> Any:
        if col.samples and self.chance(0.85):
            return self.rng.choice(list(col.samples))
        return param_value(self.rng, col.cls)

    def constant(self, col: OutCol, allow_param: bool = True) -> Expr:
        """A constant to compare `col` with: a literal, or sometimes a bound parameter."""
        value = self.value_of(col)
        allow_param = allow_param and self._params_allowed
        if col.cls == BIN or (allow_param and self.features.params and self.chance(0.25)):
            value_cls = col.cls
            if col.cls in (DEC, FLOAT) and self.chance(0.3):
                value, value_cls = int(value), INT  # an int bound for a decimal/float column
            return Param(col.cls, value, value_cls)
        return Lit(col.cls, value)

    def scalar(self, cols: list[OutCol], cls: str | None = None, depth: int = 0) -> Expr:
        """A scalar expression over `cols` (non-noisy), of class `cls` when given."""
        usable = [c for c in cols if not c.noisy and (cls is None or c.cls == cls)]
        if not usable:
            return Lit(cls or INT, param_value(self.rng, cls or INT))
        c = self.rng.choice(usable)
        base: Expr = Col(c.cls, c.rel, c.name)
        if depth > 1 or self.chance(0.7):
            return base
        roll = self.rng.random()
        if c.cls == INT and roll < 0.3:
            return Arith(INT, self.rng.choice(["+", "-"]), base, Lit(INT, self.rng.randint(1, 9)))
        if c.cls == DEC and roll < 0.3:
            return Arith(DEC, self.rng.choice(["+", "-"]), base,
                         self.constant(c, allow_param=False))
        if c.cls == FLOAT and roll < 0.3:
            return Func(FLOAT, "abs", (base,))
        if c.cls == STR and roll < 0.5:
            fn = self.rng.choice(["upper", "lower", "length", "concat"])
            if fn == "length":
                return Func(INT, "length", (base,))
            if fn == "concat":
                return Arith(STR, "||", base, Lit(STR, self.rng.choice(["-x", "", "%"])))
            return Func(STR, fn, (base,))
        if roll < 0.7 and c.cls != BIN:
            other = self.constant(c)
            return Func(c.cls, "coalesce", (base, other))
        if c.cls != BIN:
            return Case(c.cls, self.predicate(cols, depth + 1), base, self.constant(c))
        return base

    def predicate(self, cols: list[OutCol], depth: int = 0, ctes: tuple = ()) -> Expr:
        usable = [c for c in cols if not c.noisy]
        if not usable:
            return Lit(BOOL, True)
        if depth < 2 and self.chance(0.25):
            op = self.rng.choice(["AND", "AND", "OR"])
            p = Logic(BOOL, op, self.predicate(cols, depth + 1, ctes),
                      self.predicate(cols, depth + 1, ctes))
            return Not(BOOL, p) if self.chance(0.1) else p
        c = self.rng.choice(usable)
        arg: Expr = Col(c.cls, c.rel, c.name)
        kind = self.rng.choices(
            ["cmp", "in", "between", "null", "like", "insub", "colcmp"],
            weights=[8, 3, 2, 2, 3 if c.cls == STR else 0,
                     2 if self.features.subqueries and depth < 2 and c.cls in (INT, STR) else 0,
                     1],
        )[0]
        if c.cls in (BOOL, BIN) and kind not in ("null",):
            kind = "eq" if c.cls == BIN else "bool"
        if kind == "bool":
            return arg if self.chance(0.5) else Cmp(BOOL, "=", arg, self.constant(c))
        if kind == "eq":
            return Cmp(BOOL, self.rng.choice(["=", "<>"]), arg, self.constant(c))
        if kind == "cmp":
            return Cmp(BOOL, self.rng.choice(["=", "<>", "<", "<=", ">", ">="]), arg,
                       self.constant(c))
        if kind == "colcmp":
            others = [o for o in usable if o.cls == c.cls and o != c]
            if others:
                o = self.rng.choice(others)
                return Cmp(BOOL, self.rng.choice(["=", "<", ">="]), arg, Col(o.cls, o.rel, o.name))
            return Cmp(BOOL, ">=", arg, self.constant(c))
        if kind == "in":
            items = tuple(self.constant(c) for _ in range(self.rng.randint(1, 4)))
            if self.chance(0.15):
                items += (Lit(c.cls, None),)
            return InList(BOOL, arg, items, self.chance(0.25))
        if kind == "between":
            a, b = self.value_of(c), self.value_of(c)
            if c.cls in ORDERED and a is not None and b is not None and b < a:
                a, b = b, a
            return Between(BOOL, arg, Lit(c.cls, a), Lit(c.cls, b), self.chance(0.2))
        if kind == "null":
            return IsNull(BOOL, arg, self.chance(0.5))
        if kind == "like":
            return Like(BOOL, arg, self.like_pattern(c), self.chance(0.2))
        if kind == "insub":
            return InQuery(BOOL, arg, self.column_query(c.cls, depth), self.chance(0.3))
        raise AssertionError(kind)

    def like_pattern(self, c: OutCol) -> Expr:
        value = str(self.value_of(c))
        roll = self.rng.random()
        if roll < 0.3:
            pattern = value[: self.rng.randint(0, 3)] + "%"
        elif roll < 0.5:
            pattern = "%" + value[-2:]
        elif roll < 0.7:
            pattern = "".join("_" if self.chance(0.3) else ch for ch in value)
        else:
            pattern = "%" + value[1:3] + "%"
        pattern = pattern.replace("\\", "")
        # Drawn before the check so that a seed generates the same queries as before.
        if self.features.params and self.chance(0.25) and self._params_allowed:
            return Param(STR, pattern, STR)
        return Lit(STR, pattern)

    def column_query(self, cls: str, depth: int) -> Query:
        """A one-column query of class `cls`: from VALUES or a table."""
        if self.features.values and self.chance(0.35):
            values = []
            for i in range(self.rng.randint(1, 4)):
                v = param_value(self.rng, cls, self._pool(cls))
                values.append((Lit(cls, None) if i > 0 and self.chance(0.2) else Lit(cls, v),))
            rel = ValuesRel(self.fresh("t"), ("v0",), (cls,), tuple(values))
            return Select(((Col(cls, rel.alias, "v0"), "c0"),), rel)
        candidates = [(t, c) for t in self.schema.tables.values() for c in t.columns
                      if c.cls == cls]
        if not candidates:
            return Select(((Lit(cls, param_value(self.rng, cls)), "c0"),))
        table, column = self.rng.choice(candidates)
        rel = TableRef(self.fresh("t"), table)
        cols = rel.columns()
        where = self.predicate(cols, depth + 1) if self.chance(0.6) else None
        return Select(((Col(cls, rel.alias, column.name), "c0"),), rel, where)

    # -- SELECTs --

    def select(self, depth: int, kind: str, ctes: tuple = (), source: Rel | None = None) -> Select:
        rel = source or self.source(depth, ctes)
        cols = rel.columns()
        where = self.predicate(cols, ctes=ctes) if self.chance(0.6) else None
        if kind == "aggregate":
            q = self.aggregate(rel, cols, where)
        elif kind == "window" and self.features.windows:
            q = self.window_select(rel, cols, where)
        else:
            q = self.plain(rel, cols, where)
        return dataclasses.replace(q, ctes=ctes)

    def plain(self, rel: Rel, cols: list[OutCol], where: Expr | None) -> Select:
        n = self.rng.randint(1, min(5, len(cols)))
        items = []
        for i, c in enumerate(self.rng.sample(cols, n)):
            expr = Col(c.cls, c.rel, c.name, c.noisy) if self.chance(0.75) else \
                self.scalar(cols, depth=0)
            items.append((expr, f"c{i}"))
        distinct = self.chance(0.15) and not any(e.noisy for e, _ in items)
        keys = self._out_keys(rel, items)
        if distinct:
            keys.append(tuple(a for _, a in items))
        return Select(tuple(items), rel, where, distinct=distinct, out_keys=tuple(keys))

    @staticmethod
    def _out_keys(rel: Rel, items) -> list[tuple[str, ...]]:
        """Unique sets of output names: a source key all of whose columns are projected."""
        names = {f"{e.rel}.{e.name}": a for e, a in items if isinstance(e, Col)}
        return [tuple(names[k] for k in key) for key in rel.keys() if all(k in names for k in key)]

    def aggregate(self, rel: Rel, cols: list[OutCol], where: Expr | None) -> Select:
        plain = [c for c in cols if not c.noisy and c.cls not in (FLOAT, BIN)]
        groups = []
        if plain and self.chance(0.8):
            # No parameters in GROUP BY expressions: the same expression in the SELECT list
            # would have placeholders of its own, and not match (DataFusion refuses it).
            self._params_allowed = False
            groups = [self.scalar(plain, depth=1) if self.chance(0.2) else
                      Col(c.cls, c.rel, c.name) for c in
                      self.rng.sample(plain, self.rng.randint(1, min(2, len(plain))))]
            self._params_allowed = True
        items = [(g, f"c{i}") for i, g in enumerate(groups)]
        for _ in range(self.rng.randint(1, 3)):
            items.append((self.aggregate_call(cols), f"c{len(items)}"))
        having = None
        if groups and self.chance(0.25):
            having = Cmp(BOOL, self.rng.choice([">", ">=", "<"]), Agg(INT, "count", None),
                         Lit(INT, self.rng.randint(1, 5)))
        return Select(tuple(items), rel, where, tuple(groups), having,
                      out_keys=(tuple(f"c{i}" for i in range(len(groups))),))

    def aggregate_call(self, cols: list[OutCol]) -> Agg:
        fn = self.rng.choice(["count", "count", "sum", "min", "max", "avg"])
        if fn == "count":
            if self.chance(0.3):
                return Agg(INT, "count", None)
            c = self.rng.choice(cols)
            return Agg(INT, "count", Col(c.cls, c.rel, c.name, c.noisy),
                       self.chance(0.3) and not c.noisy)
        allowed = NUMERIC if fn in ("sum", "avg") else ORDERED
        usable = [c for c in cols if c.cls in allowed and not c.noisy]
        if not usable:
            return Agg(INT, "count", None)
        c = self.rng.choice(usable)
        arg = Col(c.cls, c.rel, c.name)
        cls = FLOAT if fn == "avg" else c.cls
        distinct = fn in ("sum", "min", "max") and c.cls != FLOAT and self.chance(0.15)
        return Agg(cls, fn, arg, distinct)

    def window_select(self, rel: Rel, cols: list[OutCol], where: Expr | None) -> Select:
        keys = [k for k in rel.keys() if k]
        base = self.plain(rel, cols, where)
        if not keys:
            return base
        key_cols = [self._col(cols, k) for k in keys[0]]
        partition_options = [c for c in cols if not c.noisy and c.cls in (INT, STR, DATE, BOOL)]
        partition = tuple(Col(c.cls, c.rel, c.name) for c in
                          self.rng.sample(partition_options, min(len(partition_options),
                                                                 self.rng.randint(0, 1))))
        fn = self.rng.choice(["row_number", "rank", "dense_rank", "sum", "count", "min", "max"])
        total = tuple(OrderKey(Col(c.cls, c.rel, c.name), self.chance(0.5), self.chance(0.5))
                      for c in key_cols)
        if fn == "row_number":
            order = total
            arg = None
        else:
            ordered = [c for c in cols if not c.noisy and c.cls in ORDERED]
            lead = self.rng.choice(ordered) if ordered else key_cols[0]
            order = (OrderKey(Col(lead.cls, lead.rel, lead.name), self.chance(0.5),
                              self.chance(0.5)),)
            if fn in ("sum", "count", "min", "max") and self.chance(0.3):
                order = ()
            arg = None
            if fn in ("sum", "min", "max"):
                allowed = NUMERIC if fn == "sum" else ORDERED
                usable = [c for c in cols if c.cls in allowed and not c.noisy]
                if not usable:
                    fn = "count"
                else:
                    c = self.rng.choice(usable)
                    arg = Col(c.cls, c.rel, c.name)
        cls = INT if arg is None else arg.cls
        win = Window(cls, fn, arg, partition, order)
        items = base.items + ((win, f"c{len(base.items)}"),)
        return dataclasses.replace(base, items=items)

    @staticmethod
    def _col(cols: list[OutCol], dotted: str) -> OutCol:
        rel, name = dotted.split(".", 1)
        return next(c for c in cols if c.rel == rel and c.name == name)

    def set_op(self, depth: int) -> Query:
        op = self.rng.choice(["UNION ALL", "UNION ALL", "UNION", "INTERSECT", "EXCEPT"])
        left = self.select(depth + 1, kind=self.rng.choice(["plain", "plain", "aggregate"]))
        left = dataclasses.replace(left, items=tuple(
            (e, a) for e, a in left.items if not e.noisy) or ((Lit(INT, 1), "c0"),))
        left = dataclasses.replace(left, items=tuple(
            (e, f"c{i}") for i, (e, _) in enumerate(left.items)), out_keys=())
        classes = [e.cls for e, _ in left.items]
        right = self.matching_select(classes, depth + 1)
        return SetOp(op, left, right)

    def matching_select(self, classes: list[str], depth: int) -> Select:
        """A SELECT whose columns have exactly these classes."""
        rel = self.source(depth)
        cols = rel.columns()
        items = []
        for i, cls in enumerate(classes):
            same = [c for c in cols if c.cls == cls and not c.noisy]
            if same and self.chance(0.9):
                c = self.rng.choice(same)
                items.append((Col(cls, c.rel, c.name), f"c{i}"))
            else:
                items.append((Lit(cls, param_value(self.rng, cls, self._pool(cls))), f"c{i}"))
        where = self.predicate(cols) if self.chance(0.6) else None
        return Select(tuple(items), rel, where)

    # -- ORDER BY --

    def order(self, q: Query, limit: bool) -> Query:
        """`q` ordered totally (a unique set of columns first), optionally with a LIMIT."""
        cols = q.columns()
        keys = q.keys()
        if keys:
            first = list(self.rng.choice(keys))
        elif not any(c.noisy for c in cols):
            first = [c.name for c in cols]
        else:
            return q
        rest = [c.name for c in cols if c.name not in first]
        self.rng.shuffle(first)
        by_name = {c.name: c for c in cols}
        order = tuple(OrderKey(Col(by_name[n].cls, None, n, by_name[n].noisy), self.chance(0.4),
                               self.chance(0.5)) for n in first + rest)
        return dataclasses.replace(q, order_by=order,
                                   limit=self.rng.choice([1, 3, 10, 50]) if limit else None)
