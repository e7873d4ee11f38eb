"""Scenario R of the benchmark: resuming a killed run, and re-runs that send each version once.

Perform & Engage with 2,000 conversations (each one detail request) behind 25 ms of latency,
`max_concurrency` 8, all runs against one sandbox process:

1. a full run, killed with SIGKILL once ~60% of the details were written to stdout; its last
   STATE line is what a target would have kept;
2. a run resumed from that STATE: its detail requests (counted by the sandbox) must be at most
   45% of the conversations, and the two runs together must have sent every conversation;
3. a re-run with no upstream change: no RECORD of an incremental stream (plans are full table);
4. a re-run after K conversations changed upstream: exactly K records per conversation stream.

Peak RSS is not reported here: Linux keeps a process's RSS high-water mark across exec, so a
child started after this process parsed a run's output would report this process's peak.
Scenario M measures memory.
"""

from __future__ import annotations

import json
import subprocess
import time
import typing as t
from collections import Counter

from bench.run import (
    NO_PROVIDERS,
    REPO,
    Bench,
    ChildRun,
    Row,
    bin_dir,
    log,
    perform_engage_config,
    verdict,
)
from bench.sandbox_process import SandboxProcess

if t.TYPE_CHECKING:
    from pathlib import Path

PARENTS = 2_000
PLANS = 20
LATENCY_MS = 25.0
CONCURRENCY = 8
KILL_AT = 0.6  # of the details written
GOAL_RESUMED = 0.45  # resumed run's detail requests / conversations
CHANGED = 25

CONVERSATIONS = "perform_engage_conversations"
DETAILS = "perform_engage_conversation_details"
DETAIL_ENDPOINT = "/perform-engage/api/v2/conversations/{id}/"
INCREMENTAL = (CONVERSATIONS, DETAILS)


def messages(stdout: str) -> list[dict[str, t.Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def record_counts(parsed: list[dict[str, t.Any]]) -> Counter[str]:
    return Counter(m["stream"] for m in parsed if m["type"] == "RECORD")


def keys(parsed: list[dict[str, t.Any]], stream: str) -> set[str]:
    return {
        m["record"]["api_id"] for m in parsed if m["type"] == "RECORD" and m["stream"] == stream
    }


def final_state(parsed: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    states = [m["value"] for m in parsed if m["type"] == "STATE"]
    return states[-1] if states else {}


def run_until_killed(bench: Bench, config: Path, details: int) -> tuple[float, str]:
    """Run the tap, SIGKILL it once `details` detail records were written; (wall, stdout)."""
    argv = [str(bin_dir() / "tap-conversations"), "--config", str(config)]
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - the venv's own tap
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=bench.env
    )
    assert process.stdout is not None
    lines: list[bytes] = []
    seen = 0
    marker = f'"stream":"{DETAILS}"'.encode()
    for line in process.stdout:
        lines.append(line)
        if b'"type":"RECORD"' in line and marker in line:
            seen += 1
            if seen >= details:
                break
    process.kill()
    process.wait()
    return time.perf_counter() - started, b"".join(lines).decode()


def run_with_state(bench: Bench, config: Path, state: dict[str, t.Any], name: str) -> ChildRun:
    state_path = bench.workdir / f"{name}-state.json"
    state_path.write_text(json.dumps(state))
    argv = [str(bin_dir() / "tap-conversations"), "--config", str(config)]
    return bench.run([*argv, "--state", str(state_path)], stdout_to_null=False)


def scenario_replication(bench: Bench) -> list[Row]:
    scenario = f"R: P&E {PARENTS:,} conv, {LATENCY_MS:g} ms, max_concurrency {CONCURRENCY}"
    settings = {
        **NO_PROVIDERS,
        "pe_conversations": PARENTS,
        "pe_plans": PLANS,
        "latency_ms": LATENCY_MS,
    }
    rows: list[Row] = []
    with SandboxProcess(**settings) as sandbox:
        config = bench.write_config(perform_engage_config(sandbox, CONCURRENCY), "repl.json")

        log(f"R: full run, killed at {KILL_AT:.0%} of its details ...")
        wall, stdout = run_until_killed(bench, config, int(PARENTS * KILL_AT))
        killed = messages(stdout)
        tally = sandbox.tally()
        rows.append(
            Row(
                scenario,
                "killed (SIGKILL)",
                wall,
                tally.total,
                sum(record_counts(killed).values()),
                0.0,
                0.0,
                result=f"{tally.by_endpoint.get(DETAIL_ENDPOINT, 0):,} detail requests",
            )
        )

        log("R: resumed from the killed run's last STATE ...")
        resumed_run = run_with_state(bench, config, final_state(killed), "resumed")
        resumed = messages(resumed_run.stdout)
        tally = sandbox.tally()
        details = tally.by_endpoint.get(DETAIL_ENDPOINT, 0)
        union = keys(killed, CONVERSATIONS) | keys(resumed, CONVERSATIONS)
        complete = len(union) == PARENTS
        if not complete:
            bench.notes.append(f"R: killed + resumed runs sent {len(union)} of {PARENTS}")
        rows.append(
            Row(
                scenario,
                "resumed",
                resumed_run.wall,
                tally.total,
                sum(record_counts(resumed).values()),
                resumed_run.cpu,
                0.0,  # not measured here (module docstring)
                result=(
                    f"{details:,} detail requests = {details / PARENTS:.0%} of {PARENTS:,}; "
                    f"union {len(union):,}/{PARENTS:,}"
                ),
                goal=f"<= {GOAL_RESUMED:.0%}; union complete",
                status=f"{verdict(details <= PARENTS * GOAL_RESUMED)}; {verdict(complete)}",
            )
        )

        log("R: re-run with no upstream change ...")
        same_run = run_with_state(bench, config, final_state(resumed), "unchanged")
        same = messages(same_run.stdout)
        tally = sandbox.tally()
        counts = record_counts(same)
        sent = sum(counts[s] for s in INCREMENTAL)
        rows.append(
            Row(
                scenario,
                "re-run, no change",
                same_run.wall,
                tally.total,
                sum(counts.values()),
                same_run.cpu,
                0.0,
                result=f"{sent} RECORDs of incremental streams (plans are full table)",
                goal="0",
                status=verdict(sent == 0),
            )
        )

        log(f"R: re-run after {CHANGED} conversations changed ...")
        changed = set(sandbox.mutate("perform_engage", CHANGED))
        sandbox.tally()
        after_run = run_with_state(bench, config, final_state(same), "changed")
        after = messages(after_run.stdout)
        tally = sandbox.tally()
        counts = record_counts(after)
        exact = all(counts[s] == CHANGED and keys(after, s) == changed for s in INCREMENTAL)
        rows.append(
            Row(
                scenario,
                f"re-run, {CHANGED} changed",
                after_run.wall,
                tally.total,
                sum(counts.values()),
                after_run.cpu,
                0.0,
                result=", ".join(f"{s}: {counts[s]}" for s in INCREMENTAL),
                goal=f"exactly {CHANGED} per stream",
                status=verdict(exact),
            )
        )
    for row in rows:
        log(f"   {row.run}: {row.wall:.1f} s, {row.result}")
    return rows
