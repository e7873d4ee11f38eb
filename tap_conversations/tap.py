"""The tap: its settings and the streams each configured provider enables."""

from __future__ import annotations

import logging
import typing as t

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib import StateMessage
from typing_extensions import override

from tap_conversations import onq, perform_engage, respondent
from tap_conversations.client import ProviderError, ProviderResources
from tap_conversations.concurrency import DetailPrefetcher
from tap_conversations.progress import Progress
from tap_conversations.settings import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_PROGRESS_INTERVAL,
    TOP_LEVEL_SETTINGS,
    RedactSecrets,
    config_problems,
    secret_values,
)

if t.TYPE_CHECKING:
    from tap_conversations.client import ApiStream, Provider

#: Every provider this tap knows. Adding a provider is adding its module and one entry here.
PROVIDERS: tuple[Provider, ...] = (perform_engage.PROVIDER, onq.PROVIDER, respondent.PROVIDER)


class TapConversations(Tap):
    """Conversations from Perform & Engage 365, onQ and Respondent."""

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

    def __init__(self, *args: t.Any, validate_config: bool = True, **kwargs: t.Any) -> None:
        self._provider_resources: dict[str, ProviderResources] = {}
        # The SDK's own check stops at JSON Schema; ours adds URLs and dates, and reports
        # every problem in one go (see `settings.config_problems`).
        super().__init__(*args, validate_config=False, **kwargs)
        self._redact_secrets_in_logs()
        problems = config_problems(dict(self.config), self.config_jsonschema)
        if validate_config and problems:
            msg = f"{len(problems)} problem(s) in the tap config"
            raise ConfigValidationError(msg, errors=problems)
        self.detail_prefetcher = DetailPrefetcher(self.max_concurrency)
        self.progress = Progress(
            self.logger,
            float(self.config.get("progress_interval_seconds", DEFAULT_PROGRESS_INTERVAL)),
        )

    def _redact_secrets_in_logs(self) -> None:
        redact = RedactSecrets(secret_values(self.config, self.config_jsonschema))
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

    def provider_resources(self, provider: str) -> ProviderResources:
        """The HTTP session and authenticator shared by one provider's streams."""
        if provider not in self._provider_resources:
            provider_config = self.config.get(provider) or {}
            self._provider_resources[provider] = ProviderResources(
                pool_size=self.max_concurrency + 2,
                max_requests_per_second=provider_config.get("max_requests_per_second"),
            )
        return self._provider_resources[provider]

    @override  # type: ignore[misc]
    def sync_all(self) -> None:
        # `Tap.sync_all` is marked final, but it is the one place that sees a whole run: we
        # refuse a run with no provider, reset per-run caches and close pooled connections.
        if not self.configured_providers:
            names = ", ".join(f"'{p.key}'" for p in PROVIDERS)
            msg = f"No provider configured: add at least one of {names} to the tap config"
            raise ConfigValidationError(msg, errors=[msg])
        for stream in self.streams.values():
            t.cast("ApiStream", stream).reset_for_sync()
        self.progress.start()
        try:
            super().sync_all()
        except BaseException:
            # Whatever was delivered stays delivered: the target gets the state up to the
            # failure (unsorted streams keep their previous bookmark, so a re-run covers the
            # rest), then the error propagates.
            self.write_message(StateMessage(value=self.state))
            raise
        finally:
            self.progress.stop()
            self.logger.info("Sync summary:\n%s", self.progress.summary())
            self.detail_prefetcher.close()
            for resources in self._provider_resources.values():
                resources.close()
            self._provider_resources.clear()


if __name__ == "__main__":
    TapConversations.cli()
