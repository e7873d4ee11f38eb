"""The small parsers hostile answers go through: Retry-After values and token endpoint places."""

from __future__ import annotations

import email.utils
import itertools
import time
import typing as t

import pytest

from tap_conversations.perform_engage_token import token_urls
from tap_conversations.tap import TapConversations
from tap_conversations.transport import origin, retry_after_seconds

if t.TYPE_CHECKING:
    from tap_conversations.client import ApiStream

ONQ = {"api_key": "k", "api_secret": "s", "issuer": "i", "subject": "s", "audience": "a"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("1.5", 1.5),
        ("1e308", 1e308),
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("1e999", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
        ("Mon, 99 Foo 2015 99:99:99 GMT", None),
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value) == expected


def test_retry_after_as_an_http_date_an_hour_ahead() -> None:
    value = email.utils.formatdate(time.time() + 3600, usegmt=True)
    seconds = retry_after_seconds(value)
    assert seconds is not None
    assert 3590 < seconds <= 3600


def test_token_urls_under_then_beside_the_api_root() -> None:
    assert token_urls("https://pro.weekly10.net/api/v2/", None) == [
        "https://pro.weekly10.net/api/v2/obtainauthtoken/",
        "https://pro.weekly10.net/obtainauthtoken/",
    ]
    assert token_urls("https://eu.example.com/tenant/api/v3", None) == [
        "https://eu.example.com/tenant/api/v3/obtainauthtoken/",
        "https://eu.example.com/tenant/obtainauthtoken/",
    ]
    # Without a version suffix there is no other place to try.
    assert token_urls("https://api.example.com/v2", None) == [
        "https://api.example.com/v2/obtainauthtoken/"
    ]
    pinned = "https://auth.example.com/obtainauthtoken/"
    assert token_urls("https://pro.weekly10.net/api/v2", pinned) == [pinned]


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin("https://API.example.com/a") == origin("https://api.example.com:443/b")
    assert origin("http://api.example.com/") != origin("https://api.example.com/")
    assert origin("http://127.0.0.1:8000/") != origin("http://127.0.0.1:8001/")


def test_retry_waits_start_at_half_a_second_and_grow() -> None:
    tap = TapConversations(config={"onq": ONQ}, validate_config=False)
    stream = t.cast("ApiStream", tap.streams["onq_conversations"])
    waits = list(itertools.islice(stream.retry_waits(), 8))
    # 0.5, 1, 2, 4 ... capped at 30 s, each plus up to 1 s of jitter.
    for wait, base in zip(waits, [0.5, 1, 2, 4, 8, 16, 30, 30], strict=True):
        assert base <= wait <= base + 1
