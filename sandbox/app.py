"""`Sandbox`: the data, the three provider APIs and the HTTP server, as one object for tests."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, TypeVar

from sandbox.churn import Churn, ChurnLog, ChurnSchedule
from sandbox.data import MutationResult, SandboxData
from sandbox.onq import AcceptedToken, Onq
from sandbox.perform_engage import PerformEngage
from sandbox.respondent import Respondent
from sandbox.server import Dispatcher, LoggedRequest, Provider, SandboxServer
from sandbox.settings import (
    ONQ_API_KEY,
    ONQ_API_SECRET,
    ONQ_AUDIENCE,
    ONQ_ISSUER,
    ONQ_SUBJECT,
    PE_API_KEY,
    PE_USERNAME,
    RESPONDENT_API_KEY,
    RESPONDENT_API_SECRET,
    SandboxSettings,
)

P = TypeVar("P", bound=Provider)

#: The APIs a sandbox serves; a new provider is one module plus one entry here.
PROVIDER_TYPES: tuple[type[Provider], ...] = (PerformEngage, Onq, Respondent)


class Sandbox:
    """A local server speaking all provider APIs, over deterministic data.

    Use as a context manager, or call `start()` and `stop()`. `settings` may be changed while
    it runs (see `SandboxSettings` for which fields take effect at once).
    """

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.data = SandboxData(self.settings)
        self.churn_schedule = self.data.churn = ChurnSchedule()
        self._providers = [kind(self.settings, self.data) for kind in PROVIDER_TYPES]
        self._dispatcher = Dispatcher(self.settings, self._providers)
        self._server: SandboxServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        self._dispatcher.stopping.clear()
        address = (self.settings.host, self.settings.port)
        self._server = SandboxServer(address, self._dispatcher)
        # A daemon, so that a sandbox nobody stopped never keeps the interpreter from exiting.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, hang up on open connections and join every server thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._dispatcher.stopping.set()
        server.shutdown()
        thread.join()
        server.server_close()
        server.close_connections()
        self._server = self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def connections_nodelay(self) -> list[bool]:
        """Whether each open client connection has TCP_NODELAY set."""
        if self._server is None:
            raise RuntimeError("sandbox not started")
        return self._server.connections_nodelay()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>` of the running server."""
        if self._server is None:
            raise RuntimeError("sandbox not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def tap_config(self) -> dict[str, Any]:
        """A complete tap config for all three providers, pointing at this server."""
        return {
            "perform_engage": {
                "api_url": f"{self.url}{PerformEngage.prefix}",
                "username": PE_USERNAME,
                "api_key": PE_API_KEY,
            },
            "onq": {
                "api_url": f"{self.url}{Onq.prefix}",
                "api_key": ONQ_API_KEY,
                "api_secret": ONQ_API_SECRET,
                "issuer": ONQ_ISSUER,
                "subject": ONQ_SUBJECT,
                "audience": ONQ_AUDIENCE,
            },
            "respondent": {
                "api_url": f"{self.url}{Respondent.prefix}",
                "api_key": RESPONDENT_API_KEY,
                "api_secret": RESPONDENT_API_SECRET,
            },
        }

    # --- what tests inspect -----------------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request answered so far, in the order answered (a copy)."""
        return self._dispatcher.log.entries()

    @property
    def early_retries(self) -> list[LoggedRequest]:
        """Requests that reached a provider while its last Retry-After was still running."""
        return self._dispatcher.log.early_retries()

    def count(
        self,
        provider: str | None = None,
        path_startswith: str | None = None,
        status: int | None = None,
    ) -> int:
        """How many logged requests match all the given criteria (path is the decoded one)."""
        return sum(
            1
            for entry in self.requests
            if (provider is None or entry.provider == provider)
            and (path_startswith is None or entry.path.startswith(path_startswith))
            and (status is None or entry.status == status)
        )

    def reset_log(self) -> None:
        """Forget logged requests, early retries and open Retry-After windows."""
        self._dispatcher.log.reset()

    @property
    def onq_tokens_seen(self) -> list[AcceptedToken]:
        """The distinct onQ JWTs accepted so far (iat, exp, first seen), oldest first."""
        return self._provider(Onq).tokens_seen

    @property
    def pe_tokens_issued(self) -> int:
        """How many tokens `POST /obtainauthtoken/` has handed out."""
        return self._provider(PerformEngage).tokens_issued

    def _provider(self, kind: type[P]) -> P:
        return next(provider for provider in self._providers if isinstance(provider, kind))

    # --- changing the data ------------------------------------------------------------------

    def mutate(self, provider: str, changed: int, added: int) -> MutationResult:
        """Change `changed` conversations and add `added` new ones to `provider`'s list.

        Changed records get an update timestamp newer than every existing one (yet not in the
        future) and a visible change; added records land at random positions of the list.
        For "perform_engage" this touches conversations only (plans carry no timestamp).
        """
        return self.data.mutate(provider, changed, added)

    def vanish_details(self, provider: str = "perform_engage", n: int = 1) -> list[str]:
        """Make the detail endpoint of `n` listed conversations answer 404; returns their ids."""
        return self.data.vanish_details(provider, n)

    def restore_details(self, provider: str = "perform_engage") -> None:
        """Undo `vanish_details`: every listed conversation's detail answers again."""
        self.data.restore_details(provider)

    def churn(self, provider: str, churn: Churn) -> ChurnLog:
        """Change `provider`'s conversation list between its list-page requests (see `Churn`).

        Returns the log of what was done, filled in as pages are served.
        """
        self.churn_schedule.add(provider, churn)
        return self.churn_schedule.log[provider]

    def stop_churn(self) -> None:
        """Let every list hold still again."""
        self.churn_schedule.clear()
