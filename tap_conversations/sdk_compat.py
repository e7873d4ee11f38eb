"""Every use of private (`_name`) or `@final` singer-sdk surface, in one place.

Each entry says why no public hook serves and is guarded by a test (`tests/test_sdk_compat.py`,
`tests/test_sdk_compat_logging.py`) that fails when an SDK upgrade renames, stops calling or
changes what is overridden or relied on here. The rest of the package only uses the SDK's
public API, through `CompatStream` and `CompatTap`.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import sys
import threading
import typing as t
from dataclasses import dataclass

from singer_sdk import RESTStream, Tap

if t.TYPE_CHECKING:
    import requests
from singer_sdk.contrib.msgspec import encoder as json_encoder
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.helpers._state import PROGRESS_MARKERS, StateWriter
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.plugin_base import PluginBase
from singer_sdk.singerlib import RecordMessage, StateMessage
from typing_extensions import override

from tap_conversations.errors import Terminated

if t.TYPE_CHECKING:
    from types import FrameType

    import click
    from singer_sdk.helpers.types import Context, TapState
    from singer_sdk.streams.core import Stream

#: SDK log messages (their `%`-templates) that say nothing a user acts on in a normal run:
#: they are logged at DEBUG instead. Per child sync ("Beginning sync ...") they would be
#: thousands of lines; the others repeat once per stream what the README says once.
SDK_CHATTER: frozenset[str] = frozenset(
    {
        "Beginning sync of '%s' in %s mode",
        "Beginning sync of '%s' in %s mode with context keys: %s",
        "Added '%s' as child stream to '%s'",
        "Skipping parse of env var settings...",
    }
)
#: Logged by the SDK's state manager on a child stream's logger: for a child that follows its
#: parent, the bookmark it names is not where the child starts (the parent decides).
CHILD_SDK_CHATTER: frozenset[str] = frozenset(
    {"Starting incremental sync of '%s' with bookmark value: %s"}
)
#: Logged at ERROR by the SDK's `Stream.sync` before it re-raises any error, including the
#: record limit `--test` stops a stream with on purpose. The tap logs its own one line for a
#: real failure (and a bug keeps its traceback), so this is DEBUG.
SDK_UNHANDLED_ERROR = "An unhandled error occurred while syncing '%s'"


class DemoteSdkChatter(logging.Filter):
    """Logs the given SDK messages at DEBUG, i.e. drops them unless DEBUG is on.

    For records the SDK builds on loggers it owns (`singer_sdk`, the tap logger) once per
    stream or run; per-child messages never reach a filter (see `CompatStream.log`).
    """

    def __init__(self, messages: frozenset[str] = SDK_CHATTER) -> None:
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and record.msg in self.messages:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def install_sdk_log_filters(tap_logger: logging.Logger) -> None:
    """Attach `DemoteSdkChatter` (once) to the loggers the SDK logs its chatter on."""
    for logger in (tap_logger, logging.getLogger("singer_sdk")):
        if not any(isinstance(f, DemoteSdkChatter) for f in logger.filters):
            logger.addFilter(DemoteSdkChatter())


def cli_config(ctx: click.Context) -> tuple[dict[str, t.Any], bool]:
    """The merged `--config` files and whether `--config ENV` was given, in a CLI callback.

    Why: `Tap.cb_discover` is the only way to `--discover` and builds the tap without
    validating its config; a replacement needs what the SDK's eager `--config` callback
    parsed, a `singer_sdk.plugin_base._ConfigInput` (private) in `ctx.params["config"]`.
    """
    parsed = ctx.params.get("config")
    if parsed is None:
        return {}, False
    return dict(parsed.config), bool(parsed.parse_env)


@dataclass(frozen=True)
class RecordPlan:
    """What writing a record of a stream involves, the same for every record of a run."""

    nested: bool  # a nested property is deselected: the SDK's mask walk is needed
    deselected: tuple[str, ...]  # top-level properties to drop
    plain_alias: str | None  # the stream's one map is the SDK's identity map: its alias


class CompatStream(RESTStream[t.Any]):
    """The stream-level overrides of private SDK methods."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._schema_sent = False
        self._starting_value_written = False
        self._record_plan: RecordPlan | None = None
        if self.parent_stream_type is not None and not self.logger.filters:
            self.logger.addFilter(DemoteSdkChatter(CHILD_SDK_CHATTER))

    @property
    def nested_deselection(self) -> bool:
        """Whether the catalog deselected any nested property (subclasses know)."""
        return True

    @property
    def deselected_fields(self) -> frozenset[str]:
        """Top-level properties the catalog deselected (subclasses know)."""
        return frozenset()

    @property
    def one_state_per_stream(self) -> bool:
        """A child whose state is one stream-level bookmark (`state_partitioning_keys = []`)."""
        return self.parent_stream_type is not None and self.state_partitioning_keys == []

    @override
    def log(self, message: str, *args: t.Any, level: int = logging.INFO, **kwargs: t.Any) -> None:
        # Public, but what it is called with is the SDK's: `Stream.sync` logs "Beginning
        # sync" once per child sync (per parent record) and `SDK_UNHANDLED_ERROR` before any
        # error. Lowering the level here, before `Logger.log`, means no record is even built
        # when DEBUG is off. Guarded by tests/test_sdk_compat_logging.py.
        if (
            level == logging.INFO
            and (self.parent_stream_type is not None or message in SDK_CHATTER)
        ) or (level == logging.ERROR and message == SDK_UNHANDLED_ERROR):
            level = logging.DEBUG
        super().log(message, *args, level=level, **kwargs)

    @override
    def _write_starting_replication_value(self, context: Context | None) -> None:
        # Why: the SDK writes the starting bookmark into state and logs "Starting incremental
        # sync" on every child sync, i.e. once per parent record. A child with one
        # stream-level state (`one_state_per_stream`) has the same starting value for every
        # parent of a run: once per run is enough. No public hook sits there.
        if self.one_state_per_stream:
            if self._starting_value_written:
                return
            self._starting_value_written = True
        super()._write_starting_replication_value(context)

    @override
    def _process_record(
        self,
        record: dict[str, t.Any],
        child_context: Context | None = None,
        partition_context: Context | None = None,
    ) -> None:
        # Why: per record, the SDK adds the partition's keys to the record, then builds a
        # child context (a generator, a copy, a stream-map filter call) even for a stream
        # without children: 8% of the CPU of a 50,000-record onQ sync under cProfile. A
        # stream without children only needs the first part. No public hook sits there.
        if self.child_streams:
            super()._process_record(record, child_context, partition_context)
            return
        for key, value in (partition_context or {}).items():
            if key not in record:
                record[key] = value

    @override
    def _generate_record_messages(
        self, record: dict[str, t.Any]
    ) -> t.Generator[RecordMessage, None, None]:
        # Why: the SDK's version walks the selection mask for every property of every record
        # and conforms types. Measured on 50,000 onQ records (bench scenario C), the walk was a
        # quarter of the tap's CPU; `records.RecordChecker` already checked types. No public
        # hook sits between a record and its message. Here the walk runs only when a nested
        # property is deselected; deselected top-level fields are popped by name.
        # Deselection happens here, when the record is written, and not when it is read: the
        # SDK syncs a record's children before writing it, so child streams get the parent's
        # full record whatever the catalog deselected in the parent (or when the parent is not
        # selected at all and never written).
        # Private: `_generate_record_messages`, `_stream_version`, and
        # `singer_sdk.helpers._catalog.pop_deselected_record_properties`.
        plan = self._record_plan or self._plan_records()
        if plan.nested:
            pop_deselected_record_properties(record, self.schema, self.mask)
        else:
            for name in plan.deselected:
                record.pop(name, None)
        now = datetime.datetime.now(datetime.UTC)
        if plan.plain_alias is not None:  # the one map is the SDK's identity map
            yield RecordMessage(
                stream=plan.plain_alias,
                record=record,
                version=self._stream_version,
                time_extracted=now,
            )
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=now,
                )

    def _plan_records(self) -> RecordPlan:
        """What writing a record involves in this run, worked out once (see `RecordPlan`)."""
        maps = self.stream_maps
        plain = (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and not maps[0].flattening_enabled
        )
        self._record_plan = RecordPlan(
            nested=self.nested_deselection,
            deselected=tuple(self.deselected_fields),
            plain_alias=maps[0].stream_alias if plain else None,
        )
        return self._record_plan

    @override
    def _write_schema_message(self) -> None:
        # Why: the SDK writes a child stream's SCHEMA once per parent record (each parent
        # starts a child sync). One per stream and run is all a target needs; the rest is noise
        # that grows with the account (meltano/sdk#1061). No public hook decides this.
        if not self._schema_sent:
            super()._write_schema_message()
            self._schema_sent = True

    @override
    def _increment_stream_state(
        self, latest_record: dict[str, t.Any], *, context: t.Any = None
    ) -> None:
        # Why: the SDK's bookmark logic assumes either a sorted stream (the bookmark is the
        # last value seen) or an unsorted one (the maximum, promoted only when the stream
        # ends, and then even backwards). Here list streams advance their own bookmark as the
        # snapshot is delivered (`replication`), and child bookmarks never move backwards. The
        # SDK calls this after each record is written; no public hook replaces it.
        self.advance_bookmark(latest_record, context)

    def advance_bookmark(self, record: dict[str, t.Any], context: t.Any) -> None:
        """Move the bookmark after `record` was written (default: the SDK's way)."""
        super()._increment_stream_state(record, context=context)

    def checkpoint(self) -> None:
        """Write a STATE message now, with the state as it stands.

        Why private: `_write_state_message` is the SDK's only way to emit STATE from a stream;
        it writes only when the state changed since the last one (`is_flushed`), and a
        bookmark moved by this tap is a change the SDK does not see.
        """
        self.state_manager.is_flushed = False
        self._write_state_message()

    def send_prepared(self, request: requests.PreparedRequest, context: t.Any) -> requests.Response:
        """Send one prepared request the way the SDK's paging does, retries and all.

        Why private: the SDK sends a page only inside `request_records`, one after another;
        `_request` (auth, send, metrics, `validate_response`) is what it wraps with
        `request_decorator`. Sending the next list pages ahead, on worker threads
        (`prefetch.DetailPrefetcher.pages_ahead`), needs that same path.
        """
        response: requests.Response = self.request_decorator(self._request)(request, context)
        return response

    @staticmethod
    def drop_progress_markers(state: dict[str, t.Any]) -> bool:
        """Remove the SDK's progress markers from one state entry; whether there were any.

        Why private: the SDK keeps an unsorted stream's progress under this key and promotes it
        to the bookmark when the stream ends. This tap never writes them (its bookmarks move as
        records are delivered), but a state left by a run of an earlier version may hold some:
        promoted at the end of a run, they would overwrite the bookmark with a value from a run
        that never finished. The key's name is `singer_sdk.helpers._state.PROGRESS_MARKERS`.
        """
        return state.pop(PROGRESS_MARKERS, None) is not None

    def reset_schema_sent(self) -> None:
        """A new run writes each SCHEMA again (once), and each starting bookmark, and works out
        its record plan again (its catalog may differ)."""
        self._schema_sent = False
        self._starting_value_written = False
        self._record_plan = None


@dataclass
class GroupFailure:
    """One group of streams (a provider) that stopped on an error."""

    group: str
    error: Exception


class ChangedStateWriter(StateWriter):
    """Writes a STATE message when the state differs from the last one written.

    Why: the SDK's `StateWriter` (private module) keeps a deep copy of the last state to see
    the next change; STATE is written after every parent's child sync, and the copy was a
    large share of the tap's CPU on the Perform & Engage detail workload (`output.py` says
    more). Comparing the state's JSON encoding gives the same answer (two equal states
    encoded in another key order cost one extra STATE). `CompatTap.state_writer` hands it to
    the streams; the SDK's own uses of `_state_writer` are in `Tap.sync_all` and
    `_handle_termination`, both replaced below. Guarded by tests/test_sdk_compat_state.py.
    """

    def __init__(self, message_writer: t.Any) -> None:
        super().__init__(message_writer)
        self._last_encoded: bytes | None = None

    @override
    def write_state(self, state: TapState) -> None:
        encoded = json_encoder.encode(state)
        if encoded != self._last_encoded:
            self._message_writer.write_message(StateMessage(value=state))
            self._last_encoded = encoded


class CompatTap(Tap):
    """The tap-level overrides: `Tap.sync_all` (`@final`) and `_handle_termination`."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        #: Set by SIGTERM/SIGINT; every provider's request gate ends its waits on it.
        self.stopping = threading.Event()
        super().__init__(*args, **kwargs)
        self._changed_state_writer = ChangedStateWriter(self.message_writer)

    @property
    @override
    def state_writer(self) -> StateWriter:
        return self._changed_state_writer

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # Why: the SDK's handler (installed by `PluginBase.__init__` for SIGTERM and SIGINT)
        # writes the state from inside the signal handler and calls `sys.exit(0)`, so an
        # interrupted run looks complete to an orchestrator, and worker threads waiting out a
        # Retry-After keep the process alive. No public hook exists. Here the handler wakes
        # every wait (`stopping`) and raises `Terminated` in the main thread; `sync_all` then
        # writes the state reached (`after_failed_sync`) and `invoke` exits 128 + signum.
        # A second signal while stopping exits at once.
        exit_code = 128 + signum
        if self.stopping.is_set():
            os._exit(exit_code)
        self.stopping.set()
        raise Terminated(signal.Signals(signum).name, exit_code)

    @classmethod
    @override
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:
        try:
            super().invoke(*args, **kwargs)
        except Terminated as stop:
            cls.logger.warning(
                "Stopped by %s before the end: the state of everything delivered was written; "
                "exit code %d",
                stop.signal_name,
                stop.exit_code,
            )
            # Requests still in flight on worker threads would hold the interpreter's exit
            # until their timeout: everything the target needs is written, so leave now.
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(stop.exit_code)

    @override  # type: ignore[misc]
    def sync_all(self) -> None:
        # Why: `sync_all` is the one place that sees a whole run, and the SDK offers no hook
        # before or after it, nor around each stream. The SDK's loop stops the whole run at
        # the first failing stream; here streams run in groups (one per provider, see
        # `sync_groups`) and a failure ends only its group: the other groups still run and
        # their STATE is written, then `after_groups` reports every failure.
        # It does what `Tap.sync_all` does (0.54.9): reset progress markers, fix replication
        # methods (private `_reset_state_progress_markers`, `_set_compatible_replication_
        # methods`), write the incoming state, sync each selected top-level stream and
        # finalize it, log sync costs. Guarded by tests/test_sdk_compat_logging.py.
        self.before_sync()
        failures: list[GroupFailure] = []
        try:
            self._reset_state_progress_markers()
            self._set_compatible_replication_methods()
            if self.state:
                self.state_writer.write_state(self.state)
            for group, streams in self.sync_groups():
                try:
                    self.before_group(group, streams)
                    for stream in streams:
                        stream.sync()
                        stream.finalize_state_progress_markers()
                except Exception as error:
                    failures.append(GroupFailure(group, error))
                    # The failed stream keeps its previous bookmark (its lists are unsorted,
                    # so progress within it cannot be kept); its progress markers go.
                    self._reset_state_progress_markers()
                    self.state_writer.write_state(self.state)
                    self.after_failed_group(group, streams, error)
            for stream in self.streams.values():
                stream.log_sync_costs()
        except BaseException:
            self.after_failed_sync()
            raise
        finally:
            self.after_sync()
        self.after_groups(failures)

    def sync_groups(self) -> list[tuple[str, list[Stream]]]:
        """The selected top-level streams, in groups that fail independently (default: one)."""
        return [("all streams", self.top_level_streams())]

    def top_level_streams(self) -> list[Stream]:
        """Streams the run syncs directly: selected (or with selected children), no parent."""
        return [
            stream
            for stream in self.streams.values()
            if (stream.selected or stream.has_selected_descendents)
            and stream.parent_stream_type is None
        ]

    def before_sync(self) -> None:
        """Called before any stream syncs."""

    def before_group(self, group: str, streams: list[Stream]) -> None:
        """Called before a group's first stream syncs."""

    def after_failed_group(self, group: str, streams: list[Stream], error: Exception) -> None:
        """Called when a group stopped on `error`; the state written excludes its partial work."""

    def after_failed_sync(self) -> None:
        """Called when the run stops on an error no group caught, before `after_sync`."""

    def after_sync(self) -> None:
        """Called once the run ended, however it ended."""

    def after_groups(self, failures: list[GroupFailure]) -> None:
        """Called after `after_sync` with every group that failed (raise to fail the run)."""
        if failures:
            raise failures[0].error


# ----------------------------------------------------------------------------------------------
# Settings from environment variables (`--config ENV`), nested provider settings included.
#
# Why: the SDK reads `<TAP>_<KEY>` for top-level keys only, so a provider object could only be
# given whole, as JSON (`TAP_CONVERSATIONS_ONQ='{...}'`), and `number` settings stayed strings.
# Meltano, and the README, name nested settings `TAP_CONVERSATIONS_ONQ_API_KEY`; a Meltano
# plugin command (`meltano invoke tap-conversations:check`) only receives settings as such
# variables, because Meltano's config file name is not known to a command. The one place the
# SDK builds config from the environment is the private classproperty
# `PluginBase._env_var_config`; this overrides it, calling the SDK's version first (it also loads
# a `.env` file) and adding what it leaves out. Guarded by `tests/test_sdk_compat_env.py`.
# ----------------------------------------------------------------------------------------------


def _types(schema: t.Mapping[str, t.Any]) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def _coerce(raw: str, schema: t.Mapping[str, t.Any]) -> t.Any:
    """`raw` as the schema's type; left a string when it does not parse (validation names it)."""
    types = _types(schema)
    try:
        if "integer" in types:
            return int(raw)
        if "number" in types:
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        if "boolean" in types:
            return raw.strip().lower() in {"true", "1", "yes", "on"}
        if types & {"array", "object"}:
            return json.loads(raw)
    except ValueError:
        return raw
    return raw


def nested_env_config(
    schema: t.Mapping[str, t.Any], prefix: str, environ: t.Mapping[str, str]
) -> dict[str, t.Any]:
    """Values of the nested properties of object settings, from `<PREFIX><KEY>_<SUB>` variables.

    The walk follows the schema, so `PERFORM_ENGAGE_CONVERSATION_FILTERS_PERSON_NAME` is
    unambiguous. Only variables that are set produce keys: an unset provider stays absent.
    """
    found: dict[str, t.Any] = {}
    for key, prop in schema.get("properties", {}).items():
        name = prefix + key.upper().replace("-", "_")
        if "properties" in prop:
            inner = nested_env_config(prop, name + "_", environ)
            if inner:
                found[key] = inner
        elif name in environ:
            found[key] = _coerce(environ[name], prop)
    return found


def _deep_merge(base: dict[str, t.Any], extra: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class NestedEnvConfig(PluginBase):
    """Mixin for the tap class: `--config ENV` reads nested settings and numbers too."""

    @classproperty
    def _env_var_config(cls) -> dict[str, t.Any]:
        sdk_version = PluginBase.__dict__["_env_var_config"].fget
        config: dict[str, t.Any] = sdk_version(cls)  # loads .env into os.environ first
        schema = cls.config_jsonschema
        prefix = cls._env_var_prefix
        for key, prop in schema.get("properties", {}).items():
            value = config.get(key)
            if isinstance(value, str) and "number" in _types(prop):
                config[key] = _coerce(value, prop)
            if "properties" in prop:
                inner = nested_env_config(prop, f"{prefix}{key.upper()}_", os.environ)
                if inner:
                    whole = value if isinstance(value, dict) else {}
                    config[key] = _deep_merge(whole, inner)
        return config
