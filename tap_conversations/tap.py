"""The tap: its settings and the streams each configured provider enables."""

from __future__ import annotations

import io
import json
import logging
import typing as t
from pathlib import PurePath

import click
from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib import StateMessage
from singer_sdk.tap_base import CliTestOptionValue
from typing_extensions import override

from tap_conversations import onq, perform_engage, respondent
from tap_conversations.builtin_settings import BuiltinSettings
from tap_conversations.cli import one_line_failures, read_json_file
from tap_conversations.discovery import describe_first_pages
from tap_conversations.errors import ProviderError, ProvidersFailed
from tap_conversations.prefetch import DetailPrefetcher
from tap_conversations.progress import Progress
from tap_conversations.sdk_compat import (
    CompatTap,
    GroupFailure,
    NestedEnvConfig,
    cli_config,
    install_sdk_log_filters,
)
from tap_conversations.settings import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESPONSE_MB,
    DEFAULT_PROGRESS_INTERVAL,
    TOP_LEVEL_SETTINGS,
    RedactSecrets,
    config_problems,
    readable_problem,
    register_secret,
    secret_values,
    unknown_settings,
)
from tap_conversations.state_input import (
    check_state,
    drop_unused_partitions,
    read_state_file,
    state_source,
)
from tap_conversations.transport import ProviderTransport

if t.TYPE_CHECKING:
    from tap_conversations.client import ApiStream
    from tap_conversations.provider import Provider

#: Every provider this tap knows. Adding a provider is adding its module and one entry here.
PROVIDERS: tuple[Provider, ...] = (perform_engage.PROVIDER, onq.PROVIDER, respondent.PROVIDER)


class TapConversations(NestedEnvConfig, BuiltinSettings, CompatTap):
    """Conversations from Perform & Engage 365, onQ and Respondent."""

    #: How messages name the state this run starts from (the CLI sets the file's name).
    state_source: t.ClassVar[str] = state_source(None)

    name = "tap-conversations"
    # msgspec encodes messages several times faster than the default simplejson writer.
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
        install_sdk_log_filters(self.logger)
        # A state the tap cannot start from fails in one line, before any request: its shape
        # before the SDK loads it, its bookmarks once the streams exist.
        if isinstance(state, str | PurePath):
            state = read_state_file(state)
        if state is not None:
            check_state(state, self.state_source, timestamp_streams=())
        kwargs["state"] = state
        # The SDK lists every JSON Schema problem at once; `config_problems` adds what a
        # schema cannot say (URL schemes, dates), so the user sees every problem in one go,
        # each as `<setting>: <problem>` with the setting named as in Meltano.
        try:
            super().__init__(*args, validate_config=validate_config, **kwargs)
            problems: list[str] = []
        except ConfigValidationError as error:
            problems = [readable_problem(str(problem)) for problem in error.errors]
        self._redact_secrets_in_logs()
        self._set_metrics_level()
        problems = self._with_typo_hints(
            problems + config_problems(self.config, self.config_jsonschema)
        )
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

    def _set_metrics_level(self) -> None:
        """METRIC lines (logged at INFO by the SDK) only when `metrics_log_level` is enabled."""
        level = logging.getLevelName(str(self.config.get("metrics_log_level") or "DEBUG"))
        shown = isinstance(level, int) and self.logger.isEnabledFor(level)
        self.metrics_logger.setLevel(logging.INFO if shown else logging.WARNING)

    def _with_typo_hints(self, problems: list[str]) -> list[str]:
        """Warn about every key no setting has, naming the closest setting.

        A misspelt provider object is a problem (its provider would silently not run), and a
        required setting that is missing names the unknown key that is probably it.
        """
        builtin: dict[str, t.Any] = {"properties": {}}
        self.append_builtin_config(builtin)
        provider_keys = {p.key for p in PROVIDERS}
        for unknown in unknown_settings(
            self.config, type(self).config_jsonschema, builtin["properties"]
        ):
            missing = f"{unknown.closest}: required, not set"
            if unknown.closest in provider_keys and unknown.closest not in self.config:
                problems.append(unknown.message().replace(", ignored", ""))
            elif missing in problems:
                problems[problems.index(missing)] = f"{missing} ('{unknown.setting}' is set)"
            else:
                self.logger.warning("%s", unknown.message())
        return problems

    # Command line ---------------------------------------------------------------------

    @classmethod
    @override
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        """Config files: a missing or broken one ends in one line naming it, exit 1."""
        with one_line_failures(cls.logger):
            for path in value:
                if path != "ENV":
                    read_json_file(path, "config")
        return super().cb_config(ctx, param, value)

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command, with `--state` and `--catalog` read by `invoke` (one-line errors
        for a missing or broken file instead of click's usage error or a traceback)."""
        command = super().get_singer_command()
        for param in command.params:
            if param.name in {"state", "catalog"}:
                param.type = click.STRING
        return command

    @classmethod
    @override
    def invoke(  # type: ignore[override]
        cls,
        *,
        state: str | None = None,
        catalog: str | None = None,
        **kwargs: t.Any,
    ) -> None:
        """Run the CLI; a failure the user must act on ends in one line and exit code 1.

        The traceback is for bugs: it is logged only at DEBUG level for `ProviderError`s.
        """
        with one_line_failures(cls.logger):
            state_text = None
            if state is not None:
                # Read here, where the file's name is known, so errors can name it.
                cls.state_source = state_source(state)
                state_text = json.dumps(read_state_file(state))
            catalog_file = None if catalog is None else read_json_file(catalog, "catalog")
            super().invoke(
                **kwargs,
                state=None if state_text is None else io.StringIO(state_text),
                catalog=None if catalog_file is None else io.StringIO(json.dumps(catalog_file)),
            )

    @classmethod
    @override
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """`--test`: the same config guards and one-line failures as a sync."""
        if value == CliTestOptionValue.Disabled.value:
            return
        config, parse_env = cli_config(ctx)
        with one_line_failures(cls.logger):
            tap = cls(config=config, parse_env_config=parse_env)
            if value == CliTestOptionValue.Schema.value:
                tap.write_schemas()
            else:
                tap.require_provider()
                tap.run_connection_test()
        ctx.exit()

    @classmethod
    @override
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """`--discover`: an invalid config fails as a sync does (the SDK only warns)."""
        if not value:
            return
        config, parse_env = cli_config(ctx)
        with one_line_failures(cls.logger):
            tap = cls(config=config, parse_env_config=parse_env, setup_mapper=False)
            describe_first_pages(tap)
            tap.run_discovery()
        ctx.exit()

    # Providers ------------------------------------------------------------------------

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
                max_response_mb=self.config.get("max_response_mb", DEFAULT_MAX_RESPONSE_MB),
                max_concurrency=self.max_concurrency,
            )
        return self._transports[provider]

    def require_provider(self) -> None:
        """A sync or `--test` needs at least one provider configured."""
        if not self.configured_providers:
            names = ", ".join(f"'{p.key}'" for p in PROVIDERS)
            msg = f"No provider configured: add at least one of {names} to the tap config"
            raise ConfigValidationError(msg, errors=[msg])

    # The run ---------------------------------------------------------------------------

    @override
    def before_sync(self) -> None:
        self.require_provider()
        self._warn_unavailable_streams()
        self._drop_unused_partitions()
        for stream in self.streams.values():
            t.cast("ApiStream", stream).reset_for_sync()
        self.progress.start()

    def _warn_unavailable_streams(self) -> None:
        """Name each stream the catalog selects that this run cannot sync (skipped, rc 0):
        a stream of a provider the config does not set up, or no stream of this tap."""
        catalog = self.input_catalog
        if catalog is None:
            return
        providers = {vars(stream)["name"]: p for p in PROVIDERS for stream in p.streams}
        for entry in catalog.streams:
            name, root = entry.tap_stream_id, entry.metadata.root
            selected = root.selected if root.selected is not None else root.selected_by_default
            if not selected or name in self.streams:
                continue
            provider = providers.get(name)
            if provider is None:
                why = "no stream of this tap has that name"
            else:
                why = (
                    f"it is a {provider.label} stream and the config does not set up "
                    f"'{provider.key}' (add it to sync this stream)"
                )
            self.logger.warning("The catalog selects '%s' but %s; skipped", name, why)

    def _drop_unused_partitions(self) -> None:
        """State partitions no stream reads (written by another version or tool) are dropped,
        so that every STATE message does not carry them; one INFO line per stream."""
        # The SDK's own `partitions` lists those found in the state: only a stream that
        # declares its partitions (Respondent's projects) has any to keep.
        keys = {
            name: frozenset().union(*(p.keys() for p in stream.partitions or []))
            if type(stream).partitions is not Stream.partitions
            else frozenset()
            for name, stream in self.streams.items()
        }
        for stream, count in drop_unused_partitions(self.state, keys).items():
            self.logger.info(
                "%s: dropped %d state partition(s) this tap does not use (left by another "
                "version or tool)",
                stream,
                count,
            )

    @override
    def sync_groups(self) -> list[tuple[str, list[Stream]]]:
        """One group per provider: a provider's failure does not stop the others."""
        groups: dict[str, list[Stream]] = {}
        for stream in self.top_level_streams():
            groups.setdefault(t.cast("ApiStream", stream).provider_label, []).append(stream)
        return list(groups.items())

    @override
    def before_group(self, group: str, streams: list[Stream]) -> None:
        names = [
            stream.name
            + "".join(f" + {child.name}" for child in stream.child_streams if child.selected)
            for stream in streams
        ]
        self.logger.info("%s: syncing %s", group, ", ".join(names))

    @override
    def after_failed_group(self, group: str, streams: list[Stream], error: Exception) -> None:
        # The reason is logged at ERROR once, in the summary at the end of the run.
        if isinstance(error, ProviderError):
            self.logger.debug("Traceback of the failure below", exc_info=error)
            self.logger.warning("%s stopped (reason at the end); the run goes on", group)
        else:  # a bug: keep its traceback
            self.logger.error("%s stopped on an unexpected error", group, exc_info=error)
        # Detail requests prefetched for the failed stream are dropped (new ones start a
        # new pool), and its streams no longer show as running in progress lines.
        self.detail_prefetcher.close()
        for stream in streams:
            for member in (stream, *stream.child_streams):
                self.progress.finish(member.name, failed=True)

    @override
    def after_failed_sync(self) -> None:
        # Whatever was delivered stays delivered: the target gets the state up to the failure
        # (unsorted streams keep their previous bookmark, so a re-run covers the rest).
        self.write_message(StateMessage(value=self.state))

    @override
    def after_sync(self) -> None:
        self.progress.stop()
        if not self.reader_gone:  # then the run ends with one line, not a summary of it
            self.logger.info("Sync summary:\n%s", self.progress.summary())
        # After SIGTERM/SIGINT, workers still inside a request are not waited for.
        self.detail_prefetcher.close(wait=not self.stopping.is_set())
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    @override
    def after_groups(self, failures: list[GroupFailure]) -> None:
        if not failures:
            return
        reasons = [
            (
                failure.group,
                str(failure.error)
                if isinstance(failure.error, ProviderError)
                else f"unexpected {type(failure.error).__name__}: {failure.error} (a bug)",
            )
            for failure in failures
        ]
        raise ProvidersFailed(reasons, providers_run=len(self.sync_groups()))


if __name__ == "__main__":
    TapConversations.cli()
