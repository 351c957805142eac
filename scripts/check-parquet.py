"""Reads every Parquet table under the given folders with pandas, pyarrow and DuckDB, and checks
that each column has a plain Parquet type that R's arrow reads too (strings, integers, doubles,
booleans; no extension types, no dictionary-only or nested types). CI runs it on the outputs of
`genolens patch`, `genolens ablate`, `genolens attention` and experiments (.ci/run).

    python3 scripts/check-parquet.py DIR [DIR ...]
"""

import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PLAIN = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer, pa.types.is_floating,
         pa.types.is_boolean)


def check(path: Path) -> int:
    table = pq.read_table(path)
    for field in table.schema:
        if isinstance(field.type, pa.ExtensionType) or not any(test(field.type) for test in PLAIN):
            raise SystemExit(f"{path}: column {field.name} has type {field.type}, not a plain type R's arrow reads")
    frame = pd.read_parquet(path)
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchall()[0][0]
    if not (len(frame) == rows == table.num_rows):
        raise SystemExit(f"{path}: pandas {len(frame)}, DuckDB {rows}, pyarrow {table.num_rows} rows")
    metadata = pq.read_metadata(path).metadata or {}
    if b"genolens.git_commit" not in metadata:
        raise SystemExit(f"{path}: no genolens provenance in the key-value metadata")
    return rows


def main() -> None:
    files = sorted(p for folder in sys.argv[1:] for p in Path(folder).rglob("*.parquet"))
    if not files:
        raise SystemExit(f"no Parquet files under {sys.argv[1:]}")
    for path in files:
        print(f"{check(path):>8} rows  {path}")
    print(f"{len(files)} tables read alike by pandas, pyarrow and DuckDB; plain types only")


if __name__ == "__main__":
    main()
