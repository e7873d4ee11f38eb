"""Scenario A: the same CPU-bound sync through `source-conversations read` and the Singer tap.

The setup of scenario C (onQ, 50,000 conversations, pages of 1,000, no latency). Measured runs
write stdout to /dev/null (as in scenario C) and alternate, `REPEATS` of each. The goal is on
records per CPU-second: the sync is CPU bound, and on a shared two-core machine its wall time
mostly says what else was running (the sandbox included). Each pair (a tap run, then a source
run) gives a ratio; the median pair's is the result, every pair's beside it. (Each side's
least-CPU run, as before, let one lucky run decide: the same code gave 0.82x and 1.01x.) The
wall-clock records/s of each side's fastest run is reported beside it.
One more run of each, unmeasured and after them, keeps its stdout to count the records (RECORD
lines, Singer or Airbyte): reading tens of MB into this process before a measured run would
inflate that child's peak RSS (a forked child starts as a copy of its parent). Goal: the
source's records/s within 15% of the tap's.
"""

from __future__ import annotations

import json
import typing as t

from bench.run import (
    CPU_CONVERSATIONS,
    CPU_PAGE_SIZE,
    NO_PROVIDERS,
    Bench,
    ChildRun,
    Row,
    bin_dir,
    log,
    verdict,
)
from bench.sandbox_process import SandboxProcess

GOAL_RATE_RATIO = 0.85  # Airbyte source records/s / Singer tap records/s
REPEATS = 5
STREAM = "onq_conversations"


def count_records(stdout: str) -> int:
    """RECORD messages on stdout (Singer or Airbyte: both put `"type":"RECORD"` first)."""
    return sum(1 for line in stdout.splitlines() if line.startswith('{"type":"RECORD"'))


def configured_catalog(bench: Bench, config_path: str) -> str:
    """`discover`, then the onQ stream configured incremental (no state: a full first read)."""
    source = str(bin_dir() / "source-conversations")
    discovered = bench.run([source, "discover", "--config", config_path], stdout_to_null=False)
    catalog = next(
        json.loads(line)["catalog"]
        for line in discovered.stdout.splitlines()
        if line.startswith('{"type":"CATALOG"')
    )
    stream = next(s for s in catalog["streams"] if s["name"] == STREAM)
    configured = {
        "streams": [
            {"stream": stream, "sync_mode": "incremental", "destination_sync_mode": "append_dedup"}
        ]
    }
    return str(bench.write_config(configured, "airbyte-catalog.json"))


def scenario_airbyte(bench: Bench) -> list[Row]:
    scenario = f"A: onQ {CPU_CONVERSATIONS:,} conv, Airbyte source vs Singer tap"
    runs: dict[str, list[tuple[ChildRun, int, int]]] = {"tap": [], "source": []}
    with SandboxProcess(**{**NO_PROVIDERS, "onq_conversations": CPU_CONVERSATIONS}) as sandbox:
        config = {
            "onq": {**sandbox.tap_config["onq"], "page_size": CPU_PAGE_SIZE},
            "progress_interval_seconds": 0,
        }
        config_path = str(bench.write_config(config, "airbyte-config.json"))
        catalog_path = configured_catalog(bench, config_path)
        sandbox.tally()
        argv = {
            "tap": [str(bin_dir() / "tap-conversations"), "--config", config_path],
            "source": [
                str(bin_dir() / "source-conversations"),
                "read",
                "--config",
                config_path,
                "--catalog",
                catalog_path,
            ],
        }
        for attempt in range(1, REPEATS + 1):
            for name in ("tap", "source"):
                log(f"A: {name}, run {attempt} ...")
                run = bench.run(argv[name])
                runs[name].append((run, sandbox.tally().total, CPU_CONVERSATIONS))
                log(f"   {run.wall:.1f} s wall, {run.cpu:.2f} s CPU")
        for name in ("tap", "source"):
            log(f"A: {name}, counting its records ...")
            records = count_records(bench.run(argv[name], stdout_to_null=False).stdout)
            if records != CPU_CONVERSATIONS:
                bench.notes.append(f"A: {name} wrote {records} records, not {CPU_CONVERSATIONS}")
    fastest = {name: min(results, key=lambda item: item[0].wall) for name, results in runs.items()}
    # The same number of records on both sides: rate ratios are time ratios.
    pairs = sorted(
        (tap_run.cpu / source_run.cpu, tap_run.cpu, source_run.cpu)
        for (tap_run, _, _), (source_run, _, _) in zip(runs["tap"], runs["source"], strict=True)
    )
    cpu_rate_ratio, tap_cpu, source_cpu = pairs[len(pairs) // 2]
    tap, source = fastest["tap"], fastest["source"]
    wall_rate_ratio = tap[0].wall / source[0].wall
    label = f"fastest of {REPEATS}"
    return [
        _row(scenario, f"Singer tap: tap-conversations ({label})", tap),
        _row(
            scenario,
            f"Airbyte source: source-conversations read ({label})",
            source,
            result=(
                f"records per CPU-second {cpu_rate_ratio:.2f}x the tap's (median of {REPEATS} "
                f"pairs: {source_cpu:.2f} s vs {tap_cpu:.2f} s; pairs "
                f"{' '.join(f'{ratio:.2f}' for ratio, _, _ in pairs)}); "
                f"wall records/s {wall_rate_ratio:.2f}x"
            ),
            goal=f">= {GOAL_RATE_RATIO:g}x the tap's records per CPU-second",
            status=verdict(cpu_rate_ratio >= GOAL_RATE_RATIO),
        ),
    ]


def _row(scenario: str, label: str, measured: tuple[ChildRun, int, int], **extra: t.Any) -> Row:
    run, requests, records = measured
    return Row(scenario, label, run.wall, requests, records, run.cpu, run.peak_rss_mib, **extra)
