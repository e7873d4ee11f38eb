"""A throwaway PostgreSQL cluster for end-to-end tests.

The server refuses to run as root, so as root everything runs as the `postgres` user, in a
directory under /tmp that user owns (a checkout under /root is not traversable for it).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import typing as t
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
PSQL = shutil.which("psql") or str(BIN / "psql")


def available() -> bool:
    return (BIN / "initdb").exists() and (BIN / "pg_ctl").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    """`with PostgresCluster() as pg:` starts a cluster on a free port and removes it after."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tap-conversations-pg-", dir="/tmp"))
        self.port = _free_port()
        self.user = "postgres"

    def _as_postgres(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def __enter__(self) -> PostgresCluster:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        data = str(self.root / "data")
        self._as_postgres(
            str(BIN / "initdb"), "-D", data, "-A", "trust", "--no-sync", "-U", self.user
        )
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self._as_postgres(str(BIN / "pg_ctl"), "-D", data, "-w", "-l", log, "-o", options, "start")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._as_postgres(
                str(BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def rows(self, sql: str) -> list[dict[str, t.Any]]:
        """The rows of `sql` as dicts (via json_agg, so jsonb columns arrive as JSON)."""
        wrapped = f"select coalesce(json_agg(q), '[]'::json) from ({sql}) q"
        completed = subprocess.run(
            [
                PSQL,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                wrapped,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return t.cast("list[dict[str, t.Any]]", json.loads(completed.stdout))
