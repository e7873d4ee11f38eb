"""One partition's `meltano run`, as a subprocess whose JSON log lines are read as they come.

Meltano (`--log-format=json`) writes one JSON object per line: its own events, and every stderr
line of the tap and the target with `string_id` naming the plugin. From them we keep the tap's
`METRIC` record counters (summed per stream) and, when the run fails, the failing plugin's last
line: the tap ends a failed run with one line saying what to fix.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import typing as t
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from orchestration.partitions import (
    EXTRACTOR,
    Partition,
    PartitionsError,
    PartitionsFile,
    env_prefix,
    load_partitions,
    meltano_env,
)

STOP_GRACE_SECONDS = 30
#: Installed plugins, shared by every partition's own Meltano system directory.
PLUGIN_DIRS = ("extractors", "loaders", "mappers", "utilities")
#: Meltano announces the job, whose name is the state id: `Running job with name 'dev:...'`.
_JOB_NAME = re.compile(r"^Running job with name '([^']+)'")


@dataclass(frozen=True)
class LogLine:
    """One line of Meltano's log: who wrote it (`meltano` or a plugin), its level and text."""

    source: str
    level: str
    text: str

    @classmethod
    def parse(cls, raw: str) -> LogLine:
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            return cls(source="meltano", level="info", text=raw)
        source = event.get("string_id") or event.get("name") or "meltano"
        text = str(event["event"])
        error = event.get("err")
        if error and error not in text:
            text = f"{text}: {error}"
        return cls(source=str(source), level=str(event.get("level", "info")), text=text)

    @property
    def is_metric(self) -> bool:
        """An SDK `METRIC: {...}` line (the tap's and the target's): counted, not read."""
        return self.text.startswith("METRIC: ")

    def metric(self) -> dict[str, t.Any] | None:
        """The tap's `METRIC: {...}` payload, if this line is one."""
        if self.source != EXTRACTOR or not self.is_metric:
            return None
        try:
            payload = json.loads(self.text.removeprefix("METRIC: "))
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None


@dataclass
class RunOutcome:
    """What one `meltano run` did."""

    command: list[str]
    returncode: int | None = None
    records: Counter[str] = field(default_factory=Counter)
    last_lines: dict[str, str] = field(default_factory=dict)
    meltano_errors: list[str] = field(default_factory=list)
    state_id: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0

    def observe(self, line: LogLine) -> None:
        if line.is_metric:
            metric = line.metric()
            if metric is not None and metric.get("metric") == "record_count":
                stream = str(metric.get("tags", {}).get("stream", "?"))
                self.records[stream] += int(metric.get("value", 0))
            return
        if line.source == "meltano":
            job = _JOB_NAME.search(line.text)
            if job and self.state_id is None:
                self.state_id = job.group(1)
            if line.level in {"error", "critical"}:
                self.meltano_errors.append(line.text)
        elif line.text.strip():
            self.last_lines[line.source] = line.text.strip()

    def failure_reason(self, target: str) -> str:
        """One line: the failing plugin's last words, else Meltano's own error."""
        errors = " ".join(self.meltano_errors)
        for plugin, marker in ((EXTRACTOR, "Extractor failed"), (target, "Loader failed")):
            if marker in errors and plugin in self.last_lines:
                return f"{plugin}: {self.last_lines[plugin]}"
        if self.meltano_errors:
            return f"meltano: {self.meltano_errors[-1]}"
        return f"meltano exited with code {self.returncode}"


class MeltanoProject:
    """The Meltano project whose `tap-conversations` every partition runs."""

    def __init__(self, root: Path, executable: str | None = None) -> None:
        self.root = root
        self.executable = executable or _find_meltano()

    def _meltano_yml(self) -> dict[str, t.Any]:
        path = self.root / "meltano.yml"
        try:
            project = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise PartitionsError(f"cannot read the Meltano project {path}: {error}") from None
        if not isinstance(project, dict):
            raise PartitionsError(f"{path} is not a Meltano project file")
        return project

    def declared_settings(self) -> frozenset[str]:
        """The names of the tap settings `meltano.yml` declares (Meltano ignores the rest)."""
        path = self.root / "meltano.yml"
        extractors = (self._meltano_yml().get("plugins") or {}).get("extractors") or []
        for plugin in extractors:
            if plugin.get("name") == EXTRACTOR:
                return frozenset(setting["name"] for setting in plugin.get("settings") or [])
        raise PartitionsError(f"{path}: no extractor named {EXTRACTOR}")

    def command(self, partition: Partition, target: str) -> list[str]:
        return [
            self.executable,
            "--log-format=json",
            "run",
            f"--state-id-suffix={partition.name}",
            EXTRACTOR,
            target,
        ]

    def run(
        self,
        partition: Partition,
        target: str,
        on_line: t.Callable[[LogLine], None],
        base_env: t.Mapping[str, str] | None = None,
    ) -> RunOutcome:
        """Run the partition's pipeline to its end, handing each log line to `on_line`."""
        providers = {name.split(".", 1)[0] for name in self.declared_settings() if "." in name}
        self.refuse_shared_provider_settings(providers)
        base = os.environ if base_env is None else base_env
        env = meltano_env(partition, target, providers, base)
        env.setdefault("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        # Records per stream are read from the tap's METRIC lines, which it logs only when
        # asked (they are DEBUG by default, so a plain run stays quiet).
        env["TAP_CONVERSATIONS_METRICS_LOG_LEVEL"] = "INFO"
        env.update(self._system_dir_env(partition, env))
        self._migrate_system_database(env)
        outcome = RunOutcome(command=self.command(partition, target))
        with subprocess.Popen(  # noqa: S603 - a fixed command, no shell
            outcome.command,
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        ) as process:
            try:
                assert process.stdout is not None
                for raw in process.stdout:
                    line = LogLine.parse(raw.rstrip("\n"))
                    outcome.observe(line)
                    on_line(line)
                outcome.returncode = process.wait()
            finally:
                if process.poll() is None:  # interrupted (run cancelled): stop Meltano, plugins
                    _stop(process)
        return outcome

    def refuse_shared_provider_settings(self, providers: t.Iterable[str]) -> None:
        """Provider settings in `meltano.yml` or `.env` would reach every partition: refuse them.

        (Inherited environment variables are dropped per run instead; a file cannot be.)
        """
        prefixes = tuple(providers)
        found: list[str] = []
        project = self._meltano_yml()
        sections = [(project.get("plugins") or {}, "meltano.yml")]
        for environment in project.get("environments") or []:
            name = f"meltano.yml environment {environment.get('name')}"
            sections.append((((environment.get("config") or {}).get("plugins")) or {}, name))
        for plugins, where in sections:
            for plugin in plugins.get("extractors") or []:
                config = (plugin.get("config") or {}) if plugin.get("name") == EXTRACTOR else {}
                found += [f"{where}: {key}" for key in config if key.split(".")[0] in prefixes]
        dotenv = self.root / ".env"
        env_prefixes = tuple(f"{env_prefix(EXTRACTOR)}{p.upper()}_" for p in prefixes)
        if dotenv.exists():
            for line in dotenv.read_text().splitlines():
                variable = line.removeprefix("export ").split("=", 1)[0].strip()
                if variable.startswith(env_prefixes):
                    found.append(f".env: {variable}")
        if found:
            raise PartitionsError(
                "provider settings outside the partitions file would reach every partition; "
                f"move them into the partitions file: {', '.join(found)}"
            )

    def _system_dir_env(self, partition: Partition, env: t.Mapping[str, str]) -> dict[str, str]:
        """Give the run a Meltano system directory of its own.

        `meltano run` keeps a plugin's config, catalog and `state.json` in
        `.meltano/run/<plugin>/`, one directory per plugin, not per run: two partitions running at
        once would read each other's catalog and state. Each partition gets
        `.meltano/partitions/<name>/` with the installed plugins linked in. The system database
        stays the project's own (SQLite in `.meltano/meltano.db` unless `MELTANO_DATABASE_URI`
        says otherwise).
        """
        shared = Path(env.get("MELTANO_SYS_DIR_ROOT") or self.root / ".meltano").resolve()
        own = shared / "partitions" / partition.name
        own.mkdir(parents=True, exist_ok=True)
        for kind in PLUGIN_DIRS:
            (shared / kind).mkdir(exist_ok=True)
            link = own / kind
            if not link.is_symlink():
                link.symlink_to(shared / kind, target_is_directory=True)
        extra = {"MELTANO_SYS_DIR_ROOT": str(own)}
        if "MELTANO_DATABASE_URI" not in env and "database_uri" not in self._meltano_yml():
            extra["MELTANO_DATABASE_URI"] = f"sqlite:///{shared / 'meltano.db'}"
        return extra

    def _migrate_system_database(self, env: t.Mapping[str, str]) -> None:
        """Bring Meltano's system database up to date, one partition at a time.

        Every `meltano run` migrates the system database as it starts; partitions started
        together on a fresh PostgreSQL database race on it (`UniqueViolation ...
        pg_type_typname_nsp_index`, "Cannot upgrade the system database"). Here each run first
        takes a lock file beside the project's system directory and runs `meltano upgrade
        database` (quick once up to date), so the migration happens once and the runs that
        follow find it done. (Runs on other machines sharing one database are not covered:
        run `meltano install` once there.)
        """
        shared = Path(env.get("MELTANO_SYS_DIR_ROOT") or self.root / ".meltano").resolve()
        lock_path = shared.parent.parent / ".system-db.lock"
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            completed = subprocess.run(  # noqa: S603 - a fixed command, no shell
                [self.executable, "upgrade", "database"],
                cwd=self.root,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
        if completed.returncode != 0:
            last = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["?"]
            msg = f"meltano upgrade database failed (exit {completed.returncode}): {last[0]}"
            raise PartitionsError(msg)


def _stop(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _find_meltano() -> str:
    beside_python = Path(sys.executable).parent / "meltano"
    found = str(beside_python) if beside_python.exists() else shutil.which("meltano")
    if not found:
        raise PartitionsError("meltano not found: install the project with `uv sync`")
    return found


def from_environment() -> tuple[MeltanoProject, PartitionsFile]:
    """The Meltano project (`MELTANO_PROJECT_ROOT`, default this repository) and the partitions
    file (`CONVERSATIONS_PARTITIONS`, default `orchestration/partitions.yml` in the project)."""
    root = Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path(__file__).resolve().parents[1])
    path = Path(
        os.environ.get("CONVERSATIONS_PARTITIONS") or root / "orchestration" / "partitions.yml"
    )
    project = MeltanoProject(root)
    return project, load_partitions(path, project.declared_settings())
