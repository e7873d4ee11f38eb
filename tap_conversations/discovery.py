"""`--discover` with credentials: the catalog also describes fields the first pages show.

The schemas were written from the vendors' docs; the APIs send more (docs/schema-evolution.md).
With `schema_evolution: evolve` (the default) and a provider configured, discovery reads the
first page of each list endpoint (one request each, not retried, with no partition's filter),
checks its records as a sync would, and the catalog describes what they carried beyond the
docs, so `meltano select` and hand-edited catalogs can select it. Detail and derived streams
keep their documented schema: a sync evolves them as records arrive. Without credentials, or
when a request fails, the catalog has the documented schema and one WARNING line says why.
"""

from __future__ import annotations

import typing as t

import requests

from tap_conversations.errors import ProviderError, prefix

if t.TYPE_CHECKING:
    from tap_conversations.client import ApiStream
    from tap_conversations.tap import TapConversations


def describe_first_pages(tap: TapConversations) -> None:
    """Grow each list stream's schema by what its first page carries (see the module).

    `tap` is built with `setup_mapper=False`, as `--discover` builds it: a stream map set up
    reads each stream's catalog metadata once, from the schema as it was then.
    """
    if tap.config.get("schema_evolution", "evolve") != "evolve":
        return
    if not tap.configured_providers:
        tap.logger.warning(
            "No provider configured: the catalog has the documented schemas only "
            "(with credentials, discovery also describes the fields the first pages show)"
        )
        return
    for stream in tap.streams.values():
        if stream.parent_stream_type is None:
            _describe_first_page(t.cast("ApiStream", stream))


def _describe_first_page(stream: ApiStream) -> None:
    try:
        # One attempt, not a sync's retries: discovery stays quick when the API is down (the
        # documented schema is a fine answer then).
        response = stream.send_first_page()
        stream.validate_response(response)
        for row in stream.parse_response(response):
            stream.checked_record(row)
    except Exception as error:  # any failure: the documented schema, and one line
        if isinstance(error, ProviderError):  # already one line, naming the setting
            reason = str(error)
        elif isinstance(error, requests.RequestException):
            reason = f"{prefix(stream)}: cannot reach {stream.url_base} ({type(error).__name__})"
        else:  # its text may hold a response body
            reason = f"{prefix(stream)}: {type(error).__name__}"
        stream.logger.warning(
            "%s; discovery could not read the first page, so the catalog has the documented schema",
            reason,
        )
        return
    # The instance's own schema: the class's stays as documented for other tap instances.
    stream.schema = stream.checker.grown(stream.schema)  # type: ignore[misc]
