"""Where the suite finds its files, from a clone of the repository or installed with pip.

In the repository the test modules sit beside this package (`conformance-tests/`) and
`data/` holds symbolic links to the specification (`docs/spec.md`) and the shapes
(`ontology/`). `pip install ./conformance-tests` copies the test modules into
`udn_conformance/suite/` and the linked files into `udn_conformance/data/`, so the installed
suite carries the specification and shapes it was written against.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
DATA = PACKAGE / "data"
ONTOLOGY = DATA / "ontology"

_INSTALLED_SUITE = PACKAGE / "suite"
# The test modules: installed beside the helpers, or the package's parent in the repository.
SUITE = _INSTALLED_SUITE if (_INSTALLED_SUITE / "conftest.py").is_file() else PACKAGE.parent


def _repository() -> Path | None:
    root = PACKAGE.parent.parent
    return root if (root / "Cargo.toml").is_file() and (root / "docs" / "spec.md").is_file() else None


# The Polder repository the suite runs from; None when installed. Tests of Polder's own files
# (its charts, docs, example configuration) skip without it.
REPO: Path | None = _repository()


def spec_file() -> Path:
    """The specification whose requirements and classes the run reports: `UDN_SPEC`, else the
    one the suite carries."""
    configured = os.environ.get("UDN_SPEC")
    return Path(configured) if configured else DATA / "spec.md"


def target_dir() -> Path | None:
    """Where cargo puts Polder's binaries (`CARGO_TARGET_DIR`, default `target` in the
    repository); None for an installed suite without that variable."""
    configured = os.environ.get("CARGO_TARGET_DIR")
    if configured:
        path = Path(configured)
        return path if path.is_absolute() or REPO is None else REPO / path
    return REPO / "target" if REPO is not None else None


def shared_data() -> Path | None:
    """The real open data: `UDN_SHARED_DATA`, else `../shared/data` beside the repository;
    None when absent."""
    configured = os.environ.get("UDN_SHARED_DATA")
    if configured:
        candidate = Path(configured)
    elif REPO is not None:
        candidate = REPO.parent / "shared" / "data"
    else:
        return None
    return candidate if (candidate / "SOURCES.md").is_file() else None
