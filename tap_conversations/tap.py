"""The tap: its settings and the streams each configured provider enables."""

from __future__ import annotations

import io
import logging
import typing as t
from pathlib import PurePath

from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib import StateMessage
from typing_extensions import override

from tap_conversations import onq, perform_engage, respondent
from tap_conversations.errors import ProviderError
from tap_conversations.prefetch import DetailPrefetcher
from tap_conversations.progress import Progress
from tap_conversations.sdk_compat import CompatTap
from tap_conversations.settings import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_PROGRESS_INTERVAL,
    TOP_LEVEL_SETTINGS,
    RedactSecrets,
    config_problems,
    register_secret,
    secret_values,
)
from tap_conversations.state_input import check_state, parse_state, read_state_file, state_source
from tap_conversations.transport import ProviderTransport

if t.TYPE_CHECKING:
    from tap_conversations.client import ApiStream
    from tap_conversations.provider import Provider

#: Every provider this tap knows. Adding a provider is adding its module and one entry here.
PROVIDERS: tuple[Provider, ...] = (perform_engage.PROVIDER, onq.PROVIDER, respondent.PROVIDER)


class TapConversations(CompatTap):
    """Conversations from Perform & Engage 365, onQ and Respondent."""

    #: How messages name the state this run starts from (the CLI sets the file's name).
    state_source: t.ClassVar[str] = state_source(None)

    name = "tap-conversations"
    # msgspec encodes RECORD messages several times faster than the default simplejson writer.
    message_writer_class = MsgSpecWriter

    config_jsonschema = th.PropertiesList(
        *TOP_LEVEL_SETTINGS,
        *(
            th.Property(provider.key, provider.settings, description=provider.description)
            for provider in PROVIDERS
        ),
    ).to_dict()

    def __init__(
        self,
        *args: t.Any,
        validate_config: bool = True,
        state: PurePath | str | dict[str, t.Any] | None = None,
        **kwargs: t.Any,
    ) -> None:
        self._transports: dict[str, ProviderTransport] = {}
        # A state the tap cannot start from fails in one line, before any request: its shape
        # before the SDK loads it, its bookmarks once the streams exist.
        if isinstance(state, str | PurePath):
            state = read_state_file(state)
        if state is not None:
            check_state(state, self.state_source, timestamp_streams=())
        kwargs["state"] = state
        # The SDK lists every JSON Schema problem at once; `config_problems` adds what a
        # schema cannot say (URL schemes, dates), so the user sees every problem in one go.
        try:
            super().__init__(*args, validate_config=validate_config, **kwargs)
            problems: list[str] = []
        except ConfigValidationError as error:
            problems = list(error.errors)
        self._redact_secrets_in_logs()
        problems += config_problems(self.config, self.config_jsonschema)
        if validate_config and problems:
            msg = f"{len(problems)} problem(s) in the tap config"
            raise ConfigValidationError(msg, errors=problems)
        if state is not None:
            incremental = [n for n, s in self.streams.items() if isinstance(s.replication_key, str)]
            check_state(state, self.state_source, timestamp_streams=incremental)
        self.detail_prefetcher = DetailPrefetcher(self.max_concurrency)
        self.progress = Progress(
            self.logger,
            float(self.config.get("progress_interval_seconds", DEFAULT_PROGRESS_INTERVAL)),
        )

    def _redact_secrets_in_logs(self) -> None:
        secrets = secret_values(self.config, self.config_jsonschema)
        for secret in secrets:
            register_secret(secret)
        redact = RedactSecrets(secrets)
        for handler in logging.getLogger().handlers:
            for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
                handler.removeFilter(old)
            handler.addFilter(redact)

    @classmethod
    @override
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:
        """Run the CLI; a failure the user must act on ends in one line and exit code 1.

        The traceback is for bugs: it is logged only at DEBUG level for `ProviderError`s.
        """
        try:
            if (state_file := kwargs.get("state")) is not None:
                # Read here, where the file's name is known, so errors can name it.
                cls.state_source = state_source(getattr(state_file, "name", None))
                text = state_file.read()
                parse_state(text, cls.state_source)  # the SDK's own parse fails unexplained
                kwargs["state"] = io.StringIO(text)
            super().invoke(*args, **kwargs)
        except ProviderError as error:
            cls.logger.debug("Traceback of the failure below", exc_info=error)
            cls.logger.error("%s", error)
            raise SystemExit(1) from None

    @property
    def max_concurrency(self) -> int:
        return int(self.config.get("max_concurrency", DEFAULT_MAX_CONCURRENCY))

    @property
    def configured_providers(self) -> tuple[Provider, ...]:
        return tuple(provider for provider in PROVIDERS if provider.key in self.config)

    @override
    def discover_streams(self) -> list[ApiStream]:
        """Streams of the configured providers; with none configured, every stream.

        Listing everything without credentials lets `--discover` and `--about` describe the
        whole tap; a sync still needs at least one provider (see `sync_all`).
        """
        providers = self.configured_providers or PROVIDERS
        return [stream_type(tap=self) for p in providers for stream_type in p.streams]

    def provider_transport(self, provider: str) -> ProviderTransport:
        """The HTTP session, authenticator and request gate shared by one provider's streams."""
        if provider not in self._transports:
            provider_config = self.config.get(provider) or {}
            self._transports[provider] = ProviderTransport(
                label=next(p.label for p in PROVIDERS if p.key == provider),
                url_setting=f"{provider}.api_url",
                pool_size=self.max_concurrency + 2,
                max_requests_per_second=provider_config.get("max_requests_per_second"),
                stopping=self.stopping,
            )
        return self._transports[provider]

    @override
    def before_sync(self) -> None:
        if not self.configured_providers:
            names = ", ".join(f"'{p.key}'" for p in PROVIDERS)
            msg = f"No provider configured: add at least one of {names} to the tap config"
            raise ConfigValidationError(msg, errors=[msg])
        for stream in self.streams.values():
            t.cast("ApiStream", stream).reset_for_sync()
        self.progress.start()

    @override
    def after_failed_sync(self) -> None:
        # Whatever was delivered stays delivered: the target gets the state up to the failure
        # (unsorted streams keep their previous bookmark, so a re-run covers the rest).
        self.write_message(StateMessage(value=self.state))

    @override
    def after_sync(self) -> None:
        self.progress.stop()
        self.logger.info("Sync summary:\n%s", self.progress.summary())
        # After SIGTERM/SIGINT, workers still inside a request are not waited for.
        self.detail_prefetcher.close(wait=not self.stopping.is_set())
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()


if __name__ == "__main__":
    TapConversations.cli()
