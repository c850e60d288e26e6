"""The configuration reference against the binary: `docs/config-reference.md` has a section
per `polder` subcommand whose table lists exactly the flags `polder <subcommand> --help`
prints, each with its environment variable, and the reference names no flag or `POLDER_*`
variable the binary lacks.

The subcommands are discovered from `polder --help` (and, for `token` and `audit`, their own
`--help`), so a new subcommand or flag fails here until the reference describes it.
"""

from __future__ import annotations

import re
import subprocess

from pathlib import Path

import pytest

from udn_conformance import paths

pytestmark = [
    pytest.mark.spawns_node,
    pytest.mark.skipif(paths.REPO is None, reason="Polder's configuration reference is a file of its repository"),
    pytest.mark.beyond_spec("the configuration reference lists every flag of the polder binary"),
]

REFERENCE = (paths.REPO or paths.SUITE) / "docs" / "config-reference.md"
# Variables the binary reads that no flag declares.
UNFLAGGED_VARIABLES = {"POLDER_LOG"}
# A subcommand's section: "### `polder token mint`".
_SECTION = re.compile(r"^### `polder ([a-z][a-z -]*)`\s*$")
# An option line of clap's help: "      --name <NAME>", "  -c, --command <SQL>".
_OPTION = re.compile(r"^ {2,6}(?:-[A-Za-z], )?--([a-z0-9][a-z0-9-]*)")
_ENV = re.compile(r"\[env: (POLDER_[A-Z0-9_]+)")
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
_VARIABLE = re.compile(r"\bPOLDER_[A-Z0-9_]+\b")
# clap's own flags, not the node's.
_BUILTIN = {"help", "version"}


def _help(binary: Path, command: tuple[str, ...]) -> str:
    result = subprocess.run(
        [str(binary), *command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"polder {' '.join(command)} --help failed:\n{result.stderr}"
    return result.stdout


def _section(text: str, title: str) -> list[str]:
    """The lines under the heading `title` (e.g. "Commands:") of a help text."""
    lines, inside = [], False
    for line in text.splitlines():
        if not line.strip():
            continue  # long help separates options with blank lines
        if not line.startswith(" "):
            inside = line.strip() == title
        elif inside:
            lines.append(line)
    return lines


def _subcommands(text: str) -> list[str]:
    names = [line.split()[0] for line in _section(text, "Commands:") if line.startswith("  ")]
    return [name for name in names if name != "help"]


def _options(text: str) -> dict[str, str | None]:
    """Each long flag of a help text, with the variable that can set it (None without one)."""
    options: dict[str, str | None] = {}
    flag = None
    for line in _section(text, "Options:"):
        m = _OPTION.match(line)
        if m:
            flag = m.group(1)
            options[flag] = None
        env = _ENV.search(line)
        if env and flag is not None:
            options[flag] = env.group(1)
    return {f: v for f, v in options.items() if f not in _BUILTIN}


@pytest.fixture(scope="module")
def binary_options(polder_bin) -> dict[str, dict[str, str | None]]:
    """Per subcommand ("serve", "token mint", ...), its flags and their variables."""
    found: dict[str, dict[str, str | None]] = {}

    def walk(command: tuple[str, ...]) -> None:
        text = _help(polder_bin, command)
        children = _subcommands(text)
        if command and not children:
            found[" ".join(command)] = _options(text)
        for child in children:
            walk((*command, child))

    walk(())
    assert {"serve", "sql", "demo"} <= set(found), f"subcommands found: {sorted(found)}"
    return found


def _cells(row: str) -> list[str]:
    # `\|` is a pipe inside a cell (`--jwks FILE\|URL`).
    return [c.strip().replace("\0", "|") for c in row.replace("\\|", "\0").strip("|").split("|")]


@pytest.fixture(scope="module")
def reference_text() -> str:
    return REFERENCE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def reference_tables(reference_text) -> dict[str, dict[str, set[str]]]:
    """Per subcommand section, the flags its table's first column names, each with the
    variables its second column names."""
    tables: dict[str, dict[str, set[str]]] = {}
    current = None
    for line in reference_text.splitlines():
        heading = _SECTION.match(line)
        if heading:
            current = tables.setdefault(heading.group(1), {})
            continue
        if line.startswith("#"):
            current = None
        elif current is not None and line.startswith("|") and not set(line) <= set("|-: "):
            cells = _cells(line)
            for flag in _FLAG.findall(cells[0]):
                variables = set(_VARIABLE.findall(cells[1])) if len(cells) > 1 else set()
                current[flag] = variables
    return tables


def test_every_subcommand_has_a_section(binary_options, reference_tables):
    missing = sorted(set(binary_options) - set(reference_tables))
    unknown = sorted(set(reference_tables) - set(binary_options))
    assert not missing, f"{REFERENCE.name} has no section for: {missing}"
    assert not unknown, f"{REFERENCE.name} has sections for subcommands polder lacks: {unknown}"


def test_each_section_lists_every_flag_of_its_subcommand(binary_options, reference_tables):
    problems = []
    for command, options in sorted(binary_options.items()):
        table = reference_tables.get(command, {})
        for flag in sorted(set(options) - set(table)):
            problems.append(f"polder {command}: --{flag} is not in the table")
        for flag in sorted(set(table) - set(options)):
            problems.append(f"polder {command}: the table names --{flag}, which polder lacks")
    assert not problems, "\n".join(problems)


def test_each_flag_is_listed_with_its_variable(binary_options, reference_tables):
    problems = []
    for command, options in sorted(binary_options.items()):
        table = reference_tables.get(command, {})
        for flag, variable in sorted(options.items()):
            if flag not in table:
                continue  # reported by the test above
            listed = table[flag]
            if variable is not None and listed != {variable}:
                problems.append(f"polder {command} --{flag}: variable {variable}, listed {listed}")
            if variable is None and listed:
                problems.append(f"polder {command} --{flag}: no variable, listed {listed}")
    assert not problems, "\n".join(problems)


def test_reference_names_only_flags_and_variables_polder_has(binary_options, reference_text):
    flags = {flag for options in binary_options.values() for flag in options}
    variables = {v for options in binary_options.values() for v in options.values() if v}
    unknown_flags = sorted(set(_FLAG.findall(reference_text)) - flags - _BUILTIN)
    unknown_variables = sorted(
        set(_VARIABLE.findall(reference_text)) - variables - UNFLAGGED_VARIABLES
    )
    assert not unknown_flags, f"{REFERENCE.name} names flags polder lacks: {unknown_flags}"
    assert not unknown_variables, (
        f"{REFERENCE.name} names variables polder lacks: {unknown_variables}"
    )
