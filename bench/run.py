"""Benchmark of tap-conversations against the in-repo sandbox: `uv run python -m bench.run`.

Four scenarios, each a real `tap-conversations` (or `source-conversations`) subprocess
against a sandbox running in a process of its own (so the server never shares the tap's GIL):

- L, latency bound: Perform & Engage with 2,000 conversations and 200 plans behind 30 ms of
  latency, at `max_concurrency` 1, 4, 8 and 16. Requests are counted by the sandbox (its own
  request log) and cross-checked with the tap's `http_request_count` metrics. Ideal time is
  requests x latency / concurrency.
- C, CPU per record: the tap next to a bare `requests` loop doing the same work
  (`bench/bare_onq.py`, `bench/bare_pe.py`: fetch, `json`, one JSON line per record), on a
  list workload (onQ, 50,000 conversations, pages of 1,000) and a detail workload (Perform &
  Engage, 2,000 conversations and their details, no latency, `max_concurrency` 1), each in a
  bare environment and in a Meltano-sized one (150 variables; `meltano run` gave the tap 110).
  CPU is user + sys of that child alone (`os.wait4`); each side's start-up, measured on an
  empty account, is subtracted, and the rest divided by the records written. A round runs all
  four back to back; the median of 5 rounds by ratio is reported (`measure_cpu`).
- M, memory: peak RSS of the tap syncing Perform & Engage with 2,000 and with 50,000
  conversations (no latency, 20 plans, `max_concurrency` 8): the snapshot a list stream reads
  first must not grow with the account.
- R, replication (`bench/replication.py`): a run killed at ~60% of its details and resumed,
  a re-run with no change and one with K changes.
- A, Airbyte: scenario C's sync through `source-conversations read` vs the Singer tap,
  records/s (`bench/airbyte.py`).
- T, token bucket (`bench/rate_limit.py`): an API allowing 5, 20 or 50 requests/s that says
  nothing of it, and one that sends `RateLimit-*` headers: share of the allowed rate reached
  and share of requests refused.

Children run with their bytecode cached (see `child_env`) after one unmeasured warm-up run.
Progress goes to stderr; stdout gets one markdown table and one line of machine facts. The
exit code is 1 if a goal is missed or a count disagrees. `--profile` prints cProfile
hotspots of the tap instead (the onQ list, and a serial P&E sync). Records and requests of the
tap are read from its end-of-run summary (METRIC lines are off by default).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.sandbox_process import SandboxProcess

REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 240.0  # seconds; a run that hangs must not hang the benchmark

LATENCY_MS = 30.0
LATENCY_CONVERSATIONS = 2_000
LATENCY_PLANS = 200
CONCURRENCY_LEVELS = (1, 4, 8, 16)
CPU_CONVERSATIONS = 50_000
CPU_PAGE_SIZE = 1_000
# Rounds per CPU measure, the median round reported: two shared cores, whose speed drifts.
CPU_ROUNDS = 5
DETAIL_CONVERSATIONS = 2_000
MELTANO_SIZED_VARIABLES = 150  # `meltano run` gave the tap 110 here; containers add more
MEMORY_SIZES = (2_000, 50_000)
MEMORY_PLANS = 20
MEMORY_CONCURRENCY = 8

GOAL_CONCURRENCY = 8  # the max_concurrency the latency goals are set for
GOAL_SPEEDUP = 6.0  # wall time at max_concurrency 1 / at GOAL_CONCURRENCY
GOAL_IDEAL_RATIO = 1.25  # wall time / ideal time, at GOAL_CONCURRENCY
GOAL_CPU_RATIO = 2.0  # tap CPU per record / bare loop's, bare env: a guard, not a target
GOAL_RSS_RATIO = 1.2  # peak RSS, larger account / smaller account

NO_PROVIDERS = {"pe_conversations": 0, "pe_plans": 0, "onq_conversations": 0}
NO_PROVIDERS |= {"respondent_conversations": 0}

_SUMMARY_ROW = re.compile(r"^\S+\s+(?P<records>[\d,]+)\s+(?P<requests>[\d,]+)\s+[\d,]+\s+[\d.]+")


def perform_engage_config(sandbox: SandboxProcess, concurrency: int) -> dict[str, t.Any]:
    """Tap config for a Perform & Engage-only run, without progress lines."""
    return {
        "perform_engage": sandbox.tap_config["perform_engage"],
        "max_concurrency": concurrency,
        "progress_interval_seconds": 0,
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bin_dir() -> Path:
    """The venv's scripts: the running interpreter's, else the repository's `.venv`."""
    here = Path(sys.executable).parent
    return here if (here / "tap-conversations").exists() else REPO / ".venv" / "bin"


def child_env(pycache: Path) -> dict[str, str]:
    """The environment of every measured child: bytecode cached, as in an installed plugin.

    With PYTHONDONTWRITEBYTECODE set (it is on some CI machines) every start compiles ~500
    modules again, half a second of CPU that no real installation pays. The cache goes to a
    directory of this run (PYTHONPYCACHEPREFIX), so nothing in the repository or its venv is
    written; `warm_up` fills it before anything is measured.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


# --- running one child ------------------------------------------------------------------------


@dataclass
class ChildRun:
    """One finished subprocess: wall time, its own CPU and peak RSS, and what it said."""

    wall: float
    cpu: float
    peak_rss_mib: float
    stdout: str
    stderr: str
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.counters.get("http_request_count", 0)

    @property
    def records(self) -> int:
        return self.counters.get("record_count", 0)


def metric_counters(stderr: str) -> dict[str, int]:
    """Records and requests summed over the tap's end-of-run summary table on stderr.

    (The SDK's METRIC lines are off by default, and turning them on would add their cost to
    what is measured.)
    """
    sums = {"record_count": 0, "http_request_count": 0}
    if "Sync summary:" not in stderr:
        return sums
    for line in stderr.split("Sync summary:", 1)[1].splitlines()[2:]:
        match = _SUMMARY_ROW.match(line)
        if match is None:
            break
        sums["record_count"] += int(match["records"].replace(",", ""))
        sums["http_request_count"] += int(match["requests"].replace(",", ""))
    return sums


@dataclass
class Bench:
    """What every scenario shares: a scratch directory, the child environment, the notes."""

    workdir: Path
    env: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def pycache(self) -> Path:
        return Path(self.env["PYTHONPYCACHEPREFIX"])

    @contextlib.contextmanager
    def environment(self, env: dict[str, str]) -> t.Iterator[None]:
        """Children started inside run with exactly `env`."""
        saved, self.env = self.env, env
        try:
            yield
        finally:
            self.env = saved

    def run(self, argv: list[str], *, stdout_to_null: bool = True) -> ChildRun:
        """Run `argv` from the repository root, measured with `os.wait4` (this child only)."""
        with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as out:
            stdout: t.Any = subprocess.DEVNULL if stdout_to_null else out
            started = time.perf_counter()
            process = subprocess.Popen(  # noqa: S603 - our own argv: the venv's tap or python
                argv, cwd=REPO, stdout=stdout, stderr=err, env=self.env
            )
            watchdog = threading.Timer(CHILD_TIMEOUT, process.kill)
            watchdog.start()
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                watchdog.cancel()
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            out.seek(0)
            run = ChildRun(
                wall=wall,
                cpu=usage.ru_utime + usage.ru_stime,
                peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
                stdout=out.read(),
                stderr=err.read(),
            )
        if process.returncode != 0:
            tail = "\n".join(run.stderr.splitlines()[-20:])
            msg = f"{' '.join(argv[:3])} ... exited with {process.returncode}:\n{tail}"
            raise RuntimeError(msg)
        run.counters = metric_counters(run.stderr)
        return run

    def write_config(self, config: dict[str, t.Any], name: str = "config.json") -> Path:
        path = self.workdir / name
        path.write_text(json.dumps(config))
        return path

    def run_tap(self, config: dict[str, t.Any], catalog: Path | None = None) -> ChildRun:
        """`tap-conversations --config config.json [--catalog catalog.json] > /dev/null`."""
        path = self.write_config(config)
        argv = [str(bin_dir() / "tap-conversations"), "--config", str(path)]
        return self.run(argv + (["--catalog", str(catalog)] if catalog else []))

    def selecting(
        self, config: dict[str, t.Any], streams: t.Collection[str], name: str = "catalog.json"
    ) -> Path:
        """A catalog (from `--discover`) that selects only `streams`, written to `name`."""
        path = self.write_config(config, "discover.json")
        argv = [str(bin_dir() / "tap-conversations"), "--config", str(path), "--discover"]
        catalog = json.loads(self.run(argv, stdout_to_null=False).stdout)
        for entry in catalog["streams"]:
            for item in entry["metadata"]:
                if item["breadcrumb"] == []:
                    item["metadata"]["selected"] = entry["tap_stream_id"] in streams
        return self.write_config(catalog, name)

    def run_bare(self, config_path: Path, module: str = "bench.bare_onq") -> tuple[ChildRun, int]:
        """A bare loop (`bench.bare_onq`, `bench.bare_pe`); its run and the records it wrote."""
        argv = [sys.executable, "-m", module, str(config_path), os.devnull]
        run = self.run(argv, stdout_to_null=False)
        return run, int(json.loads(run.stdout)["records"])

    def check_requests(self, label: str, counted: int, failed: int, run: ChildRun) -> None:
        """The sandbox's count is the measurement; the tap's own metrics must agree."""
        if run.requests != counted:
            self.notes.append(
                f"{label}: the sandbox answered {counted} requests, tap metrics say {run.requests}"
            )
        if failed:
            self.notes.append(f"{label}: {failed} requests were answered with an error status")


def warm_up(bench: Bench) -> None:
    """One small, unmeasured sync of every code path, so the bytecode cache is complete."""
    log("warm-up ...")
    settings = {**NO_PROVIDERS, "pe_conversations": 10, "pe_plans": 2, "onq_conversations": 10}
    with SandboxProcess(**settings) as sandbox:
        for concurrency in (1, 2):
            config = {**sandbox.tap_config, "max_concurrency": concurrency}
            del config["respondent"]
            bench.run_tap({**config, "progress_interval_seconds": 0})
        warm = bench.write_config(sandbox.tap_config, "warm.json")
        bench.run_bare(warm)
        bench.run_bare(warm, "bench.bare_pe")
    bench.run([str(bin_dir() / "tap-conversations"), "--about"])


# --- the table ---------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    run: str
    wall: float
    requests: int
    records: int
    cpu: float
    peak_rss_mib: float
    result: str = ""
    goal: str = ""
    status: str = ""


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(rows: list[Row]) -> str:
    header = (
        "| Scenario | Run | Wall (s) | Requests | Records | Records/s | CPU (s) "
        "| Peak RSS (MiB) | Result | Goal | Status |"
    )
    lines = [header, "|:--|:--|--:|--:|--:|--:|--:|--:|:--|:--|:--|"]
    for row in rows:
        rate = f"{row.records / row.wall:,.0f}" if row.records and row.wall else ""
        lines.append(
            f"| {row.scenario} | {row.run} | {row.wall:.1f} | {row.requests:,} "
            f"| {row.records:,} | {rate} | {row.cpu:.2f} | {row.peak_rss_mib:.0f} "
            f"| {row.result} | {row.goal} | {row.status} |"
        )
    return "\n".join(lines)


def machine_facts() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"Machine: {model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"singer-sdk {metadata.version('singer-sdk')}, {platform.system()} {platform.release()}"
    )


# --- scenario L: latency bound -------------------------------------------------------------


def scenario_latency(bench: Bench) -> list[Row]:
    scenario = f"L: P&E {LATENCY_CONVERSATIONS:,} conv + {LATENCY_PLANS} plans, {LATENCY_MS:g} ms"
    settings = {
        **NO_PROVIDERS,
        "pe_conversations": LATENCY_CONVERSATIONS,
        "pe_plans": LATENCY_PLANS,
        "latency_ms": LATENCY_MS,
    }
    rows: list[Row] = []
    baseline = 0.0
    with SandboxProcess(**settings) as sandbox:
        for concurrency in CONCURRENCY_LEVELS:
            log(f"L: max_concurrency {concurrency} ...")
            config = perform_engage_config(sandbox, concurrency)
            run = bench.run_tap(config)
            tally = sandbox.tally()
            bench.check_requests(f"L N={concurrency}", tally.total, tally.failed, run)
            baseline = baseline or run.wall
            ideal = tally.total * LATENCY_MS / 1000 / concurrency
            speedup, ratio = baseline / run.wall, run.wall / ideal
            row = Row(
                scenario,
                f"max_concurrency {concurrency}",
                run.wall,
                tally.total,
                run.records,
                run.cpu,
                run.peak_rss_mib,
                result=f"ideal {ideal:.1f} s; {speedup:.1f}x vs N=1; {ratio:.2f}x ideal",
            )
            if concurrency == GOAL_CONCURRENCY:
                row.goal = f">= {GOAL_SPEEDUP:g}x vs N=1; <= {GOAL_IDEAL_RATIO:g}x ideal"
                row.status = (
                    f"{verdict(speedup >= GOAL_SPEEDUP)}; {verdict(ratio <= GOAL_IDEAL_RATIO)}"
                )
            rows.append(row)
            log(f"   {run.wall:.1f} s, {tally.total} requests, {row.result}")
    return rows


# --- scenario C: CPU per record, next to a bare requests loop -----------------------------------


@dataclass(frozen=True)
class Workload:
    """What the tap and its bare loop both fetch, and how the tap is configured for it."""

    name: str
    sandbox: dict[str, t.Any]
    bare_module: str
    make_config: t.Callable[[dict[str, t.Any]], dict[str, t.Any]]
    requests_per_record: bool  # one request per record or so (details), not per page
    streams: tuple[str, ...] = ()  # the tap syncs only these (what the bare loop does), if set


WORKLOADS = (
    Workload(
        f"list: onQ {CPU_CONVERSATIONS:,} conv, pages of {CPU_PAGE_SIZE:,}",
        {"onq_conversations": CPU_CONVERSATIONS},
        "bench.bare_onq",
        lambda cfg: {"onq": {**cfg["onq"], "page_size": CPU_PAGE_SIZE}},
        requests_per_record=False,
    ),
    Workload(
        f"detail: P&E {DETAIL_CONVERSATIONS:,} conv + details, max_concurrency 1",
        {"pe_conversations": DETAIL_CONVERSATIONS, "pe_plans": 1},
        "bench.bare_pe",
        lambda cfg: {"perform_engage": cfg["perform_engage"], "max_concurrency": 1},
        requests_per_record=True,
        streams=("perform_engage_conversations", "perform_engage_conversation_details"),
    ),
)


def bare_environment(pycache: Path) -> dict[str, str]:
    """A minimal environment: what a cron job or a container entry point has."""
    keep = ("PATH", "HOME", "LANG")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def meltano_sized_environment(pycache: Path) -> dict[str, str]:
    """The bare environment plus what `meltano run` adds: its project, plugin and setting
    variables (no proxy among them), MELTANO_SIZED_VARIABLES in all."""
    env = bare_environment(pycache)
    plugins = ("TAP_CONVERSATIONS", "TARGET_POSTGRES", "MELTANO_EXTRACT", "MELTANO_LOAD")
    settings = (
        "START_DATE",
        "MAX_CONCURRENCY",
        "MAX_RETRIES",
        "REQUEST_TIMEOUT_SECONDS",
        "PROGRESS_INTERVAL_SECONDS",
        "PERFORM_ENGAGE_API_URL",
        "PERFORM_ENGAGE_USERNAME",
        "ONQ_API_URL",
        "ONQ_ISSUER",
        "ONQ_SUBJECT",
        "ONQ_AUDIENCE",
        "RESPONDENT_API_URL",
        "HOST",
        "PORT",
        "USER",
        "DATABASE",
        "DEFAULT_TARGET_SCHEMA",
        "BATCH_SIZE_ROWS",
        "HARD_DELETE",
        "ADD_RECORD_METADATA",
        "LOAD_METHOD",
        "VALIDATE_RECORDS",
    )
    index = 0
    while len(env) < MELTANO_SIZED_VARIABLES:
        plugin = plugins[index % len(plugins)]
        setting = settings[(index // len(plugins)) % len(settings)]
        suffix = "" if index < len(plugins) * len(settings) else f"_{index}"
        env[f"{plugin}_{setting}{suffix}"] = f"/project/.meltano/run/{plugin.lower()}/{index:04d}"
        index += 1
    env["MELTANO_PROJECT_ROOT"] = "/project"
    return env


@dataclass
class CpuRound:
    """One round of a CPU measure: the tap and the bare loop on the workload, then both on an
    empty account, back to back, so that all four ran on the machine in one state."""

    tap: ChildRun
    tap_requests: int
    bare: ChildRun
    bare_records: int
    tap_empty: ChildRun
    bare_empty: ChildRun
    all_ratios: list[float] = field(default_factory=list)  # of every round, for the median's

    @property
    def tap_per_record(self) -> float:
        return (self.tap.cpu - self.tap_empty.cpu) / max(self.tap.records, 1)

    @property
    def bare_per_record(self) -> float:
        return (self.bare.cpu - self.bare_empty.cpu) / max(self.bare_records, 1)

    @property
    def ratio(self) -> float:
        return self.tap_per_record / self.bare_per_record


def measure_cpu(bench: Bench, workload: Workload, env: dict[str, str]) -> CpuRound:
    """CPU_ROUNDS rounds (`CpuRound`); the round of the median ratio.

    Start-up is most of an empty run and about a third of a full one, and the machine's speed
    drifts over a minute: measured in separate blocks (or best of each on its own), the
    subtraction moved a ratio by up to 0.4 between two runs of the same code.
    """
    rounds: list[CpuRound] = []
    full = SandboxProcess(**{**NO_PROVIDERS, **workload.sandbox})
    with bench.environment(env), full as box, SandboxProcess(**NO_PROVIDERS) as nothing:
        runs = []
        for name, sandbox in (("cpu", box), ("empty", nothing)):
            config = {**workload.make_config(sandbox.tap_config), "progress_interval_seconds": 0}
            catalog = (
                bench.selecting(config, workload.streams, f"{name}-catalog.json")
                if workload.streams
                else None
            )
            runs.append((config, catalog, bench.write_config(config, f"{name}.json")))
        (config, catalog, path), (empty_config, empty_catalog, empty_path) = runs
        for _ in range(CPU_ROUNDS):
            box.tally()
            tap = bench.run_tap(config, catalog)
            tap_requests = box.tally().total
            bare, bare_records = bench.run_bare(path, workload.bare_module)
            tap_empty = bench.run_tap(empty_config, empty_catalog)
            bare_empty, _ = bench.run_bare(empty_path, workload.bare_module)
            rounds.append(CpuRound(tap, tap_requests, bare, bare_records, tap_empty, bare_empty))
    rounds.sort(key=lambda measured: measured.ratio)
    median = rounds[len(rounds) // 2]
    median.all_ratios = [measured.ratio for measured in rounds]
    for measured in rounds:
        bench.check_requests(f"C {workload.name}", measured.tap_requests, 0, measured.tap)
    return median


def scenario_cpu(bench: Bench) -> list[Row]:
    rows: list[Row] = []
    best = f"median of {CPU_ROUNDS} rounds"
    for workload in WORKLOADS:
        for env_name, make_env in (
            ("bare env", bare_environment),
            (f"Meltano-sized env ({MELTANO_SIZED_VARIABLES} vars)", meltano_sized_environment),
        ):
            log(f"C: {workload.name}, {env_name} ...")
            env = make_env(bench.pycache)
            measure = measure_cpu(bench, workload, env)
            scenario = f"C: {workload.name}"
            per_record = (
                f"per record (start-up subtracted): tap {measure.tap_per_record * 1e6:.0f} µs, "
                f"bare {measure.bare_per_record * 1e6:.0f} µs = {measure.ratio:.2f}x; "
                f"start-up: tap {measure.tap_empty.cpu:.2f} s, "
                f"bare {measure.bare_empty.cpu:.2f} s; "
                f"rounds {' '.join(f'{ratio:.2f}' for ratio in measure.all_ratios)}"
            )
            goal = status = ""
            if env_name == "bare env":
                goal = f"<= {GOAL_CPU_RATIO:g}x bare per record"
                status = verdict(measure.ratio <= GOAL_CPU_RATIO)
            elif workload.requests_per_record:
                # Where requests are most of the work, the environment's weight shows.
                goal = "tap < bare per record"
                status = verdict(measure.ratio < 1)
            rows.append(
                Row(
                    scenario,
                    f"tap, {env_name} ({best})",
                    measure.tap.wall,
                    measure.tap_requests,
                    measure.tap.records,
                    measure.tap.cpu,
                    measure.tap.peak_rss_mib,
                    result=per_record,
                    goal=goal,
                    status=status,
                )
            )
            rows.append(
                Row(
                    scenario,
                    f"bare requests loop, {env_name} ({best})",
                    measure.bare.wall,
                    0,
                    measure.bare_records,
                    measure.bare.cpu,
                    measure.bare.peak_rss_mib,
                )
            )
            log(f"   {per_record}")
    return rows


# --- scenario M: memory ------------------------------------------------------------------------


def scenario_memory(bench: Bench) -> list[Row]:
    scenario = f"M: P&E + {MEMORY_PLANS} plans, max_concurrency {MEMORY_CONCURRENCY}, no latency"
    rows: list[Row] = []
    for size in MEMORY_SIZES:
        log(f"M: {size:,} conversations ...")
        settings = {**NO_PROVIDERS, "pe_conversations": size, "pe_plans": MEMORY_PLANS}
        with SandboxProcess(**settings) as sandbox:
            config = perform_engage_config(sandbox, MEMORY_CONCURRENCY)
            run = bench.run_tap(config)
            tally = sandbox.tally()
        bench.check_requests(f"M {size}", tally.total, tally.failed, run)
        rows.append(
            Row(
                scenario,
                f"{size:,} conversations",
                run.wall,
                tally.total,
                run.records,
                run.cpu,
                run.peak_rss_mib,
            )
        )
        log(f"   {run.wall:.1f} s, {run.cpu:.2f} s CPU, peak RSS {run.peak_rss_mib:.0f} MiB")
    small, large = rows[0].peak_rss_mib, rows[-1].peak_rss_mib
    ratio = max(small, large) / min(small, large)
    rows[-1].result = f"peak RSS {large / small:.2f}x the {MEMORY_SIZES[0]:,} run"
    rows[-1].goal = f"peak RSS within {GOAL_RSS_RATIO - 1:.0%}"
    rows[-1].status = verdict(ratio <= GOAL_RSS_RATIO)
    return rows


# --- profiling ---------------------------------------------------------------------------------


def profile(bench: Bench, top: int) -> None:
    """cProfile hotspots of the tap. cProfile sees the main thread only, so P&E runs serially."""
    cases: list[tuple[str, dict[str, int], t.Callable[[dict[str, t.Any]], dict[str, t.Any]]]] = [
        (
            f"onQ {CPU_CONVERSATIONS:,} conversations, pages of {CPU_PAGE_SIZE:,}",
            {"onq_conversations": CPU_CONVERSATIONS},
            lambda cfg: {"onq": {**cfg["onq"], "page_size": CPU_PAGE_SIZE}},
        ),
        (
            f"P&E {MEMORY_SIZES[0]:,} conversations + {MEMORY_PLANS} plans, max_concurrency 1",
            {"pe_conversations": MEMORY_SIZES[0], "pe_plans": MEMORY_PLANS},
            lambda cfg: {"perform_engage": cfg["perform_engage"], "max_concurrency": 1},
        ),
    ]
    output = bench.workdir / "tap.prof"
    for title, sizes, make_config in cases:
        with SandboxProcess(**{**NO_PROVIDERS, **sizes}) as sandbox:
            config = {**make_config(sandbox.tap_config), "progress_interval_seconds": 0}
            path = bench.write_config(config)
            module = ["-m", "tap_conversations.tap", "--config", str(path)]
            run = bench.run([sys.executable, "-m", "cProfile", "-o", str(output), *module])
        print(f"\n## {title}: {run.wall:.1f} s wall, {run.cpu:.2f} s CPU under cProfile\n")
        for order in ("tottime", "cumulative"):
            text = io.StringIO()
            pstats.Stats(str(output), stream=text).sort_stats(order).print_stats(top)
            body = text.getvalue()
            body = body[body.find("   ncalls") :].rstrip().replace(str(REPO) + "/", "")
            print(f"### by {order}\n\n```\n{body}\n```\n")


# --- scenario A: the Airbyte source ------------------------------------------------------------


def scenario_airbyte(bench: Bench) -> list[Row]:
    """See `bench/airbyte.py` (kept apart: it builds on this module)."""
    from bench.airbyte import scenario_airbyte as run_scenario  # noqa: PLC0415

    return run_scenario(bench)


# --- main --------------------------------------------------------------------------------------


def scenario_replication(bench: Bench) -> list[Row]:
    from bench.replication import scenario_replication as run  # noqa: PLC0415 - it imports us

    return run(bench)


def scenario_rate_limit(bench: Bench) -> list[Row]:
    from bench.rate_limit import scenario_rate_limit as run  # noqa: PLC0415 - it imports us

    return run(bench)


SCENARIOS: dict[str, t.Callable[[Bench], list[Row]]] = {
    "L": scenario_latency,
    "C": scenario_cpu,
    "M": scenario_memory,
    "A": scenario_airbyte,
    "R": scenario_replication,
    "T": scenario_rate_limit,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--scenarios", default="LCMRA", help="which of L, C, M, R, A, T (default: LCMRA)"
    )
    parser.add_argument("--profile", action="store_true", help="print cProfile hotspots only")
    parser.add_argument("--top", type=int, default=25, help="functions per profile listing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tap-bench-") as tmp:
        workdir = Path(tmp)
        bench = Bench(workdir, child_env(workdir / "pycache"))
        started = time.perf_counter()
        warm_up(bench)
        if args.profile:
            profile(bench, args.top)
            return 0
        rows: list[Row] = []
        for key in args.scenarios.upper():
            rows += SCENARIOS[key](bench)
        log(f"benchmark took {time.perf_counter() - started:.0f} s")
    print(render(rows))
    print()
    print(machine_facts())
    for note in bench.notes:
        print(f"\nWARNING: {note}")
    return 1 if bench.notes or any("FAIL" in row.status for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
