"""Write the files a node under test must serve, for running the suite against another node.

    python conformance-tests/prepare_data.py DIR

writes DIR/generated/..., DIR/tpch/<table>.parquet (TPC-H SF 0.01) and DIR/tables.txt, one
`NAME=LOCATION` line per table the node must serve (with the real open data from
../shared/data when present). Load those tables into your node, then run the suite with
UDN_FLIGHT_URL and UDN_DATA_DIR=DIR (see README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from udn_conformance import datasets  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="folder to write the files into")
    args = parser.parse_args()
    out: Path = args.out.resolve()

    tables: dict[str, Path] = dict(datasets.write_generated(out / "generated"))
    generators = datasets.tpch_generators(HERE.parent / "target")
    if not generators:
        print(
            "no TPC-H generator (pip install tpchgen-cli); TPC-H tables left out", file=sys.stderr
        )
    else:
        tables.update(datasets.write_tpch(out / "tpch", generators))
    shared = datasets.shared_data_dir(HERE.parent)
    if shared is not None:
        tables.update({name: shared / rel for name, rel in datasets.SHARED_TABLES.items()})

    lines = [f"{name}={location}" for name, location in tables.items()]
    (out / "tables.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
