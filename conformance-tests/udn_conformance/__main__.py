"""`python -m udn_conformance ...` is `udn-conformance ...` (see cli.py)."""

from .cli import main

raise SystemExit(main())
