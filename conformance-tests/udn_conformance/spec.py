"""The numbered requirements of the UDN specification (`docs/spec.md`), and which tests check them.

A requirement is defined where its ID is written in bold, `**UDN-FSQL-5**`, at the start of a
list item; the text up to the next blank line or list item is its statement. Tests name the
requirements they check with `@pytest.mark.requirement("UDN-FSQL-5", ...)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ID = re.compile(r"^UDN-[A-Z]+-\d+$")
BOLD_ID = re.compile(r"\*\*(UDN-[A-Z]+-\d+)\*\*")
_ITEM = re.compile(r"^\s*[-*]\s+\*\*(UDN-[A-Z]+-\d+)\*\*\s*(.*)$")
_SENTENCE_END = re.compile(r"(?<=\.)\s")


@dataclass(frozen=True)
class Requirement:
    id: str
    text: str

    def summary(self, width: int = 72) -> str:
        """The statement's first sentence, cut to `width` characters, for one-line reports."""
        sentence = _SENTENCE_END.split(self.text, maxsplit=1)[0]
        if len(sentence) <= width:
            return sentence
        return sentence[: width - 1].rsplit(" ", 1)[0] + "…"


def bold_ids(text: str) -> list[str]:
    """Every `**UDN-...**` in the text, in order, duplicates included."""
    return BOLD_ID.findall(text)


def parse(text: str) -> dict[str, Requirement]:
    """The requirements defined in the spec's text, in document order."""
    found: dict[str, Requirement] = {}
    current: str | None = None
    lines: list[str] = []

    def close() -> None:
        if current is not None:
            found.setdefault(current, Requirement(current, " ".join(" ".join(lines).split())))

    for line in text.splitlines():
        item = _ITEM.match(line)
        if item:
            close()
            current, lines = item.group(1), [item.group(2)]
        elif current is not None and line.strip() and not line.lstrip().startswith(("-", "#", "|")):
            lines.append(line.strip())
        else:
            close()
            current, lines = None, []
    close()
    return found


def load(path: Path) -> dict[str, Requirement]:
    return parse(path.read_text(encoding="utf-8"))


def marker_ids(item) -> list[str]:
    """The requirement IDs a collected test is marked with (all `requirement` markers)."""
    ids: list[str] = []
    for marker in item.iter_markers("requirement"):
        for arg in marker.args:
            if arg not in ids:
                ids.append(arg)
    return ids


def sort_key(requirement_id: str) -> tuple:
    """Spec order within a family: UDN-FSQL-2 before UDN-FSQL-10."""
    family, _, number = requirement_id.rpartition("-")
    return (family, int(number) if number.isdigit() else 0)


CLASS_BASE = "https://w3id.org/udn/spec/1.0/conf/"
_CLASS_ROW = re.compile(r"^\|\s*([A-Za-z]+)\s*\|\s*`(https://w3id\.org/udn/spec/[^`]+/conf/([a-z]+))`\s*\|(.*)\|(.*)\|\s*$")
_RANGE = re.compile(r"(UDN-[A-Z]+)-(\d+) to (UDN-[A-Z]+)-(\d+)")
_ONE = re.compile(r"UDN-[A-Z]+-\d+")


@dataclass(frozen=True)
class ConformanceClass:
    """A conformance class of the spec's "Conformance classes" table."""

    name: str  # core, catalog, ... (the URI's last segment)
    title: str  # Core, Catalog, ...
    uri: str
    requirements: tuple[str, ...]
    depends_on: tuple[str, ...]  # names


def parse_classes(text: str) -> dict[str, ConformanceClass]:
    """The conformance classes, by name, from the rows of the "Conformance classes" table:
    `| Core | `URI` | UDN-DATA-1 to UDN-DATA-5, UDN-OPS-6 (note) | none |`."""
    classes: dict[str, ConformanceClass] = {}
    titles: dict[str, str] = {}
    rows = []
    for line in text.splitlines():
        row = _CLASS_ROW.match(line)
        if row:
            title, uri, name, requirements, depends = row.groups()
            titles[title.lower()] = name
            rows.append((name, title, uri, requirements, depends))
    for name, title, uri, requirements, depends in rows:
        ids: list[str] = []
        rest = requirements
        for family, first, family_to, last in _RANGE.findall(requirements):
            if family != family_to:
                raise ValueError(f"class {name}: a range across families: {requirements}")
            ids += [f"{family}-{n}" for n in range(int(first), int(last) + 1)]
        rest = _RANGE.sub("", requirements)
        ids += _ONE.findall(rest)
        depends_on = tuple(
            titles.get(word.lower(), word.lower())
            for word in re.findall(r"[A-Za-z]+", depends)
            if word.lower() != "none"
        )
        classes[name] = ConformanceClass(name, title, uri, tuple(sorted(set(ids), key=sort_key)), depends_on)
    return classes


def load_classes(path: Path) -> dict[str, ConformanceClass]:
    return parse_classes(path.read_text(encoding="utf-8"))


def claimed(classes: dict[str, ConformanceClass], value: str) -> list[str]:
    """The classes a comma-separated list names (`core,catalog`, any case) and every class they
    depend on; KeyError naming an unknown one."""
    return with_dependencies(classes, [n.strip().lower() for n in value.split(",") if n.strip()])


def with_dependencies(classes: dict[str, ConformanceClass], names: list[str]) -> list[str]:
    """`names` and every class they depend on, in the spec's order of classes."""
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise KeyError(f"unknown conformance class {unknown[0]!r}; the spec's are {', '.join(classes)}")
    wanted: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(classes[name].depends_on)
    return [n for n in classes if n in wanted]
