"""The failures a user has to act on, and the one prefix every message starts with.

Each is raised with a message that is one line, names the provider and stream (or setting) and
says what to fix; `TapConversations.invoke` prints that line and exits 1, with the traceback
only at DEBUG level. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import typing as t

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

if t.TYPE_CHECKING:
    import requests


class ProviderError(FatalAPIError):
    """A failure the user has to act on; its message is one line that says what to fix."""


class CredentialsRejected(ProviderError):
    """The API refused our credentials (401/403, or the token endpoint said no)."""


class TokenRejected(CredentialsRejected):
    """A 401 to a token we believed valid: renew it once and try again before giving up."""


class RecordVanished(ProviderError):
    """A detail endpoint answered 404 for an id its list endpoint had just returned."""


class PaginationError(ProviderError):
    """The server's paging contradicts itself: a loop, a page that never ends, a bad count."""


class BadBody(RetriableAPIError):
    """A success status whose body is not JSON (HTML, cut short, not UTF-8): asked again.

    The message is the reason alone, e.g. `answered HTTP 200 OK with a body that is not JSON
    (content type text/html)`, so retry and give-up lines can quote it.
    """

    def __init__(self, reason: str, response: requests.Response) -> None:
        super().__init__(reason, response)
        self.reason = reason


class Interrupted(BaseException):
    """Raised in any thread waiting on a provider once a termination signal arrived.

    A `BaseException`, so that no `except Exception` on the way turns it into a failure.
    """


class Terminated(BaseException):
    """SIGTERM or SIGINT: the run stops, writes its state and exits with 128 + the signal."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = exit_code


#: The one line a run ends with when stdout's reader goes away.
READER_GONE = (
    "stdout closed by the reader (broken pipe); the last STATE written covers what it read"
)


class ReaderGone(BaseException):
    """stdout's reader went away (EPIPE): nothing more can be written, not even a STATE.

    A `BaseException`, so that no `except Exception` on the way writes a STATE after it.
    """

    def __init__(self) -> None:
        super().__init__(READER_GONE)


class Named(t.Protocol):
    """What a message prefix needs of a stream."""

    @property
    def name(self) -> str: ...

    provider_label: t.ClassVar[str]


def prefix(stream: Named) -> str:
    """`<provider> stream '<name>'`: how every message about a stream starts."""
    return f"{stream.provider_label} stream '{stream.name}'"


class ProvidersFailed(ProviderError):
    """One or more providers stopped on an error while the others ran to the end."""

    def __init__(self, reasons: t.Sequence[tuple[str, str]], providers_run: int) -> None:
        self.reasons = list(reasons)  # (provider label, one-line reason)
        self.providers_run = providers_run
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        """Each failed provider's one-line reason, after a headline when others ran too."""
        reasons = [r if r.startswith(label) else f"{label}: {r}" for label, r in self.reasons]
        if self.providers_run <= 1:
            return reasons
        head = (
            f"{len(reasons)} of {self.providers_run} providers failed "
            "(the others finished and their state is written):"
        )
        return [head, *(f"  {reason}" for reason in reasons)]
