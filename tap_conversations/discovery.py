"""`--discover` with credentials: the catalog also describes fields the first pages show.

The schemas were written from the vendors' docs; the APIs send more (docs/schema-evolution.md).
With `schema_evolution: evolve` (the default) and a provider configured, discovery reads the
first page of each list endpoint (one request each, not retried; for a partitioned list, its
first partition's), checks its records as a sync would, and the catalog describes what they
carried beyond the docs, so `meltano select` and hand-edited catalogs can select it. Detail and
derived streams keep their documented schema: a sync evolves them as records arrive. Without
credentials, or when a request fails, the catalog has the documented schema and one WARNING
line says why.
"""

from __future__ import annotations

import typing as t

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
    partitions = stream.partitions
    context = partitions[0] if partitions else None
    # One attempt: discovery must stay quick when the API is down (the documented schema is
    # a fine answer), not wait out a sync's retries. The stream is discovery's own instance.
    setattr(stream, "backoff_max_tries", lambda: 1)  # noqa: B010 - the SDK's public hook
    try:
        page = next(iter(stream.request_pages(context)), [])  # the generator closes with it
        stream.checked_batch(list(page), context)
    except Exception as error:  # any failure: the documented schema, and one line
        reason = (
            str(error)
            if isinstance(error, ProviderError)
            else f"{prefix(stream)}: {type(error).__name__}"  # its text may hold a body
        )
        stream.logger.warning(
            "%s; discovery could not read the first page, so the catalog has the documented schema",
            reason,
        )
        return
    # The instance's own schema: the class's stays as documented for other tap instances.
    stream.schema = stream.checker.grown(stream.schema)  # type: ignore[misc]
