"""Sandbox settings and the fixed credentials every provider accepts.

The secrets are distinctive strings so tests can grep logs and output for leaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PROVIDERS: tuple[str, ...] = ("perform_engage", "onq", "respondent")

ALL_FAULT_KINDS: tuple[str, ...] = (
    "500",
    "502_html",
    "503_retry_after",
    "429",
    "drop",
    "malformed_json",
    "slow",
)

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")

PE_USERNAME = "sandbox.admin@example.com"
PE_API_KEY = "pe-sandbox-secret-9f3c61e2b7a04d58"

ONQ_API_KEY = "onq-sandbox-key-4d7a9c21"
# Fake credentials, known to anyone who reads this file; the HS256 secret has >= 32 bytes.
ONQ_API_SECRET = "onq-sandbox-secret-7e2d94c0a6b15f83c9d2e4a1b0f6"  # noqa: S105
ONQ_ISSUER = "https://tap-conversations.example.com"
ONQ_SUBJECT = "sandbox.integration@example.com"
ONQ_AUDIENCE = "https://sandbox.onq.io"

RESPONDENT_API_KEY = "respondent-sandbox-key-2b8e5f17"
RESPONDENT_API_SECRET = "respondent-sandbox-secret-c41e7a9d03f2"  # noqa: S105

PePathology = Literal["repeat_next", "endless", "count_mismatch"]
OnqEnvelope = Literal["array", "object"]


@dataclass(frozen=True)
class FaultSettings:
    """Which requests fail, and how.

    Each request to a provider in `providers` is faulted with probability `rate`; the kind is
    drawn uniformly from `kinds`. The draws come from one `random.Random(seed)` per server,
    re-seeded whenever a different `FaultSettings` is assigned at run time.
    """

    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = ALL_FAULT_KINDS
    retry_after_seconds: float = 1
    slow_seconds: float = 3.0
    providers: tuple[str, ...] = PROVIDERS
    #: Only requests whose decoded path contains this are faulted ("" = every request).
    path_contains: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")
        if not self.kinds or set(self.kinds) - set(ALL_FAULT_KINDS):
            raise ValueError(f"fault kinds must be a non-empty subset of {ALL_FAULT_KINDS}")
        if set(self.providers) - set(PROVIDERS):
            raise ValueError(f"fault providers must be a subset of {PROVIDERS}")
        if self.retry_after_seconds < 0 or self.slow_seconds < 0:
            raise ValueError("retry_after_seconds and slow_seconds must not be negative")


@dataclass
class SandboxSettings:
    """Everything a sandbox is built from.

    Sizes and `seed` are read once, when the data is generated. The behaviour settings
    (`latency_ms`, `faults`, `pe_*`, `onq_*`, `respondent_max_page_size`) are read on every
    request, so tests may change them on a running sandbox through `Sandbox.settings`.
    """

    seed: int = 1
    pe_conversations: int = 120
    pe_plans: int = 15
    onq_conversations: int = 150
    respondent_conversations: int = 60
    respondent_projects: int = 3

    host: str = "127.0.0.1"
    port: int = 0
    latency_ms: float = 0.0
    faults: FaultSettings = field(default_factory=FaultSettings)

    pe_max_limit: int = 50
    pe_pathology: PePathology | None = None
    pe_token_ttl_seconds: float | None = None
    #: Serve `POST /obtainauthtoken/` beside the API root (`/perform-engage/obtainauthtoken/`)
    #: instead of under it, as some tenants do; the path under the API root then answers 404.
    pe_token_at_root: bool = False
    onq_token_max_age_seconds: float | None = None
    onq_envelope: OnqEnvelope = "array"
    respondent_max_page_size: int = 100
    #: Serve fields the docs do not list (`sandbox.undocumented`): 3 per record, 2 per element.
    undocumented_fields: bool = False
    #: A token bucket per provider (`sandbox.ratelimit`): requests/s, burst (default: one
    #: second's worth), and whether answers carry `RateLimit-*` headers. None: no limit.
    rate_limit_per_second: float | None = None
    rate_limit_burst: float | None = None
    rate_limit_headers: bool = False

    def __post_init__(self) -> None:
        sizes = {
            "pe_conversations": self.pe_conversations,
            "pe_plans": self.pe_plans,
            "onq_conversations": self.onq_conversations,
            "respondent_conversations": self.respondent_conversations,
        }
        for name, size in sizes.items():
            if size < 0:
                raise ValueError(f"{name} must not be negative, got {size}")
        if self.pe_plans < 1 and self.pe_conversations > 0:
            raise ValueError("conversations need at least one plan (pe_plans >= 1)")
        if self.respondent_projects < 1:
            raise ValueError("respondent_projects must be at least 1")
        if self.host not in LOOPBACK_HOSTS:
            raise ValueError(f"the sandbox binds loopback only ({LOOPBACK_HOSTS}), not {self.host}")
        if self.rate_limit_per_second is not None and self.rate_limit_per_second <= 0:
            raise ValueError("rate_limit_per_second must be positive")
        if self.rate_limit_burst is not None and self.rate_limit_burst < 1:
            raise ValueError("rate_limit_burst must be at least 1")
        if self.pe_max_limit < 1 or self.respondent_max_page_size < 1:
            raise ValueError("pe_max_limit and respondent_max_page_size must be at least 1")
