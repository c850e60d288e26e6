"""The numbered requirements of the UDN specification (`docs/spec.md`), and which tests check them.

A requirement is defined where its ID is written in bold, `**UDN-FSQL-5**`, at the start of a
list item; the text up to the next blank line or list item is its statement. Tests name the
requirements they check with `@pytest.mark.requirement("UDN-FSQL-5", ...)`.
"""

from __future__ import annotations

import os
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


def spec_path(repo_root: Path) -> Path:
    """`UDN_SPEC`, else `docs/spec.md` beside the suite."""
    configured = os.environ.get("UDN_SPEC")
    return Path(configured) if configured else repo_root / "docs" / "spec.md"


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
