"""`python -m sandbox`: run the sandbox until SIGINT/SIGTERM, e.g. for a Meltano demo.

With `--env-file PATH`, once the server listens it writes the tap's settings as shell
`export` lines (so a script can wait for the file, then `source` it).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from sandbox import FaultSettings, Sandbox, SandboxSettings

ENV_PREFIX = "TAP_CONVERSATIONS"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = SandboxSettings(
            host=args.host,
            port=args.port,
            seed=args.seed,
            pe_conversations=args.pe_conversations,
            pe_plans=args.pe_plans,
            onq_conversations=args.onq_conversations,
            respondent_conversations=args.respondent_conversations,
            latency_ms=args.latency_ms,
            faults=FaultSettings(rate=args.fault_rate, seed=args.seed),
            undocumented_fields=args.undocumented_fields,
            rate_limit_per_second=args.rate_limit,
            rate_limit_burst=args.rate_limit_burst,
            rate_limit_headers=args.rate_limit_headers,
        )
    except ValueError as problem:
        parser.error(str(problem))
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with Sandbox(settings) as sandbox:
        if args.env_file:
            write_env_file(args.env_file, sandbox.tap_config())
        print(f"sandbox listening on {sandbox.url}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def env_lines(tap_config: dict[str, dict[str, str]]) -> list[str]:
    """`export TAP_CONVERSATIONS_<PROVIDER>_<SETTING>=<value>` for every setting."""
    return [
        f"export {ENV_PREFIX}_{provider.upper()}_{name.upper()}={shlex.quote(value)}"
        for provider, values in tap_config.items()
        for name, value in values.items()
    ]


def write_env_file(path: Path, tap_config: dict[str, dict[str, str]]) -> None:
    """Write atomically and owner-readable only: the file holds credentials."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as file:
        file.write("\n".join(env_lines(tap_config)) + "\n")
    os.replace(temporary, path)


def _parser() -> argparse.ArgumentParser:
    defaults = SandboxSettings()
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default=defaults.host, help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--pe-conversations", type=int, default=defaults.pe_conversations)
    parser.add_argument("--pe-plans", type=int, default=defaults.pe_plans)
    parser.add_argument("--onq-conversations", type=int, default=defaults.onq_conversations)
    parser.add_argument(
        "--respondent-conversations", type=int, default=defaults.respondent_conversations
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests faulted")
    parser.add_argument(
        "--undocumented-fields",
        action="store_true",
        help="serve fields the docs do not list: 3 per record, 2 per nested element",
    )
    parser.add_argument(
        "--rate-limit", type=float, help="requests/s each provider allows (a token bucket)"
    )
    parser.add_argument(
        "--rate-limit-burst", type=float, help="the bucket's size (default: one second's worth)"
    )
    parser.add_argument(
        "--rate-limit-headers",
        action="store_true",
        help="send RateLimit-Limit/-Remaining/-Reset with every answer",
    )
    parser.add_argument("--env-file", type=Path, help="write shell exports for the tap here")
    return parser


if __name__ == "__main__":
    sys.exit(main())
