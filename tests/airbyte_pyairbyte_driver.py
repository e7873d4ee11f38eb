"""Runs inside the PyAirbyte environment that `tests/test_airbyte_pyairbyte.py` creates.

    python airbyte_pyairbyte_driver.py read  --executable X --config C --cache-dir D --out O
    python airbyte_pyairbyte_driver.py check --executable X --config C --out O

`read` reads every stream (incremental where the source supports it, PyAirbyte's default) into
a DuckDB cache kept in D, so a second `read` continues from the state PyAirbyte stored, then
writes each stream's table as {stream: [{key, extracted_at_ms}]} (a composite key joined by
"|"). `check` writes whether the
connection check passed and the text PyAirbyte reports. This file imports `airbyte`, which is
not installed in the tap's own environment: it is not a test module.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import airbyte as ab
from sqlalchemy import text

#: stream -> its primary key columns (PyAirbyte's DuckDB column names are these, lower case).
KEYS = {
    "perform_engage_conversations": ("api_id",),
    "perform_engage_conversation_details": ("api_id",),
    "perform_engage_conversation_elements": ("conversation_api_id", "position"),
    "perform_engage_conversation_plans": ("api_id",),
    "perform_engage_conversation_plan_details": ("api_id",),
    "perform_engage_conversation_plan_users": ("plan_api_id", "api_id"),
    "perform_engage_conversation_plan_departments": ("plan_api_id", "api_id"),
    "onq_conversations": ("id",),
    "respondent_conversations": ("uid",),
    "respondent_messages": ("uid",),
    "respondent_participants": ("conversation_uid", "uid"),
}


def source(args: argparse.Namespace) -> ab.Source:
    assert os.environ.get("AIRBYTE_OFFLINE_MODE") == "1"
    return ab.get_source(
        "source-conversations",
        config=json.loads(Path(args.config).read_text()),
        local_executable=args.executable,
    )


def read(args: argparse.Namespace) -> dict[str, object]:
    conversations = source(args)
    conversations.select_all_streams()
    cache = ab.DuckDBCache(db_path=Path(args.cache_dir) / "cache.duckdb")
    result = conversations.read(cache=cache)
    tables: dict[str, list[dict[str, object]]] = {}
    with cache.get_sql_engine().connect() as connection:
        for stream, columns in KEYS.items():
            table = cache.processor.get_sql_table_name(stream)
            key = ", ".join(f"cast({column} as varchar)" for column in columns)
            rows = connection.execute(
                text(
                    f"select concat_ws('|', {key}) as key, "
                    "epoch_ms(_airbyte_extracted_at) as extracted_at_ms "
                    f"from {cache.schema_name}.{table}"
                )
            )
            tables[stream] = [dict(row._mapping) for row in rows]
    return {"processed_records": result.processed_records, "tables": tables}


def check(args: argparse.Namespace) -> dict[str, object]:
    try:
        source(args).check()
    except Exception as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True, "error": ""}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["read", "check"])
    parser.add_argument("--executable", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--cache-dir")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    report = read(args) if args.command == "read" else check(args)
    Path(args.out).write_text(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
