"""Scenario T: an API with a rate limit it does not document (issue 27).

The sandbox gives each provider a token bucket (`sandbox.ratelimit`: a burst of one second's
worth, `429` with `Retry-After: 1` when empty). The tap syncs 300 Perform & Engage
conversations and their details behind 30 ms of latency with default settings; it is not told
the rate. Reported, from the sandbox's own log:

- % of the allowed rate: the time the bucket needed for what it accepted,
  (accepted - burst) / rate, over the time from the first request to the last;
- % refused: requests answered 429 over all requests.
"""

from __future__ import annotations

import typing as t

from bench.run import LATENCY_MS, NO_PROVIDERS, Row, log, verdict
from bench.sandbox_process import SandboxProcess

if t.TYPE_CHECKING:
    from bench.run import Bench

CONVERSATIONS = 300
PLANS = 15
RUNS: tuple[tuple[float, bool], ...] = ((5, False), (20, False), (50, False), (20, True))
GOAL_RATE_SHARE = 0.95
GOAL_REFUSED_SHARE = 0.01


def scenario_rate_limit(bench: Bench) -> list[Row]:
    scenario = f"T: P&E {CONVERSATIONS} conv + details, {LATENCY_MS:g} ms, token bucket"
    rows: list[Row] = []
    for rate, headers in RUNS:
        name = f"{rate:g} req/s" + (", RateLimit headers" if headers else "")
        log(f"T: {name} ...")
        settings = {
            **NO_PROVIDERS,
            "pe_conversations": CONVERSATIONS,
            "pe_plans": PLANS,
            "latency_ms": LATENCY_MS,
            "rate_limit_per_second": rate,
            "rate_limit_headers": headers,
        }
        with SandboxProcess(**settings) as sandbox:
            config = {
                "perform_engage": sandbox.tap_config["perform_engage"],
                "progress_interval_seconds": 0,
            }
            run = bench.run_tap(config)
            tally = sandbox.tally()
        refused = tally.by_status.get(429, 0)
        accepted = tally.total - refused
        share = (accepted - rate) / rate / tally.span if tally.span else 0.0
        refused_share = refused / tally.total
        ceiling = 0.0 if headers else GOAL_REFUSED_SHARE
        row = Row(
            scenario,
            name,
            run.wall,
            tally.total,
            run.records,
            run.cpu,
            run.peak_rss_mib,
            result=f"{share:.0%} of the allowed rate; {refused} refused ({refused_share:.1%})",
            goal=f">= {GOAL_RATE_SHARE:.0%}; <= {ceiling:.0%} refused",
            status=(f"{verdict(share >= GOAL_RATE_SHARE)}; {verdict(refused_share <= ceiling)}"),
        )
        if tally.failed != refused:
            bench.notes.append(f"T {name}: {tally.failed - refused} errors besides 429")
        rows.append(row)
        log(f"   {run.wall:.1f} s, {row.result}")
    return rows
