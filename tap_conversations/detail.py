"""`DetailStream`: one GET per parent record, returning a single object."""

from __future__ import annotations

import typing as t

from typing_extensions import override

from tap_conversations.client import ApiStream
from tap_conversations.errors import ProviderError, RecordVanished, prefix
from tap_conversations.replication import ListReplication

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator


class DetailStream(ApiStream):
    """One GET per parent record, returning a single object.

    State is one stream-level bookmark, not one partition per parent (the SDK's default would
    make every STATE message grow with the account). The parent only hands over records that
    are new or changed, so the child does not filter on its own bookmark. Its requests may be
    sent ahead, concurrently, by `prefetch.DetailPrefetcher`.
    """

    state_partitioning_keys: t.ClassVar[list[str]] = []
    #: Read by the parent (`client.is_detail_stream`): its requests are prefetched, it gets totals.
    fetched_per_parent: t.ClassVar[bool] = True

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        prefetched = self.conversations_tap.detail_prefetcher.take(self, context)
        try:
            return self.fetch_records(context) if prefetched is None else prefetched.result()
        except RecordVanished as gone:
            # No permanent gap: the parent is sent again next run, and its detail read again.
            self.logger.warning("%s — skipped this run; the next run asks again", gone)
            for parent in self.conversations_tap.streams.values():
                replication = getattr(parent, "replication", None)
                if self in parent.child_streams and isinstance(replication, ListReplication):
                    replication.retry_current()
            return []

    def fetch_records(self, context: Context | None) -> list[dict[str, t.Any]]:
        """All records for one parent (on a worker thread when prefetched), each checked to
        be the record asked for: an API that answers another one ends the stream."""
        records = list(self.checked_records(context))
        for record in records:
            for key, asked in (context or {}).items():
                if record.get(key) != asked:
                    msg = (
                        f"{prefix(self)}: asked for the record with {key} {asked!r} and got "
                        f"the one with {key} {record.get(key)!r}; the API answered another "
                        "record"
                    )
                    raise ProviderError(msg)
        return records

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[t.Any] | None:
        return None

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        return {}
