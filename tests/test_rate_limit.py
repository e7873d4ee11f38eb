"""The request gate finds a rate limit and keeps under it (issue 27): unit tests on a fake clock.

`Clock` replaces the gate's `now` and `sleep`; every answer is handed to `finished` by hand, so
each test states what the API did and when, and checks what the gate then allows.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t

import pytest
import requests

from tap_conversations.gate import RequestGate
from tap_conversations.progress import Progress
from tap_conversations.transport import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.time = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += max(seconds, 0.0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(RequestGate, "now", staticmethod(clock.now))
    monkeypatch.setattr(RequestGate, "sleep", lambda _gate, seconds: clock.sleep(seconds))
    return clock


def answer(status: int, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    return response


def send(gate: RequestGate, clock: Clock, status: int, latency: float = 0.03) -> bool:
    """One request through the gate, answered `status` after `latency` seconds."""
    sent_at = gate.wait_turn()
    clock.time += latency
    return gate.finished(sent_at, answer(status))


def test_no_limit_met_means_no_holding_back(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    for _ in range(200):
        send(gate, clock, 200, latency=0.0)
    assert clock.slept == []
    assert gate.rate is None
    assert gate.concurrency == 8
    assert gate.holding_back() is None
    assert gate.found() is None


def test_a_429_sets_the_rate_from_what_was_accepted_and_halves_concurrency(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    for _ in range(30):  # 30 accepted in 0.9 s ...
        send(gate, clock, 200)
    assert send(gate, clock, 429) is True  # ... then refused: a signal about the provider
    # 30 accepted over ~0.9 s plus a second's burst: about 15.8/s, kept at 97% of it.
    assert gate.rate == pytest.approx(30 / 1.93 * 0.97, rel=0.02)
    assert gate.concurrency == 4


def test_two_refusals_measure_the_rate_between_them(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    send(gate, clock, 429)
    clock.time += 1.0  # the Retry-After
    # 40 accepted in the 2 s after the first refusal, then the bucket is empty again.
    gate.rate = 1000.0
    for _ in range(40):
        sent_at = gate.wait_turn()
        clock.time += 0.05
        gate.finished(sent_at, answer(200))
    sent_at = gate.wait_turn()
    elapsed = sent_at - 1000.0
    clock.time += 0.03
    gate.finished(sent_at, answer(429))
    assert gate.rate == pytest.approx(40 / elapsed * 0.97, rel=0.01)


def test_refusals_already_in_flight_cut_once(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    for _ in range(20):
        send(gate, clock, 200)
    sent = [gate.wait_turn() for _ in range(6)]  # six in flight when the bucket ran dry
    clock.time += 0.03
    for sent_at in sent:
        gate.finished(sent_at, answer(429))
    assert gate.concurrency == 4, "one episode of refusals halves concurrency once"
    assert gate.refusals == 6


def test_the_rate_found_paces_requests_and_climbs_back(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    gate.rate = 10.0
    start = clock.time
    for _ in range(50):
        send(gate, clock, 200, latency=0.0)
    # 50 requests at 10/s (one second's worth may be saved up: none here) take ~5 s ...
    assert clock.time - start == pytest.approx(5.0, rel=0.1)
    # ... and each accepted one raised the rate a little, concurrency back to the maximum.
    assert gate.rate == pytest.approx(10.5)
    assert gate.concurrency == 8


def test_never_above_max_requests_per_second(clock: Clock) -> None:
    gate = RequestGate(max_requests_per_second=5, max_concurrency=8)
    gate.rate = 4.99
    start = clock.time
    for _ in range(21):
        send(gate, clock, 200, latency=0.0)
    assert gate.allowed_rate() == 5
    assert clock.time - start >= 20 / 5 * 0.99


def test_concurrency_stops_climbing_while_latency_grows(clock: Clock) -> None:
    steady, queueing = RequestGate(max_concurrency=8), RequestGate(max_concurrency=8)
    steady.concurrency = queueing.concurrency = 2.0
    send(steady, clock, 200, latency=0.03)
    send(queueing, clock, 200, latency=0.03)
    for _ in range(40):
        send(steady, clock, 200, latency=0.03)
        send(queueing, clock, 200, latency=0.09)  # the server queues: three times as long
    assert steady.concurrency == 8
    assert queueing.concurrency < 4


def test_a_lone_503_is_not_a_limit(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    for _ in range(5):
        send(gate, clock, 200)
    assert send(gate, clock, 503) is False
    assert send(gate, clock, 500) is False
    assert gate.rate is None
    assert gate.concurrency == 8


def test_503s_from_several_workers_at_once_are_a_limit(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    for _ in range(5):
        send(gate, clock, 200)
    verdicts: list[bool] = []
    turn = threading.Lock()
    done = threading.Barrier(3)

    def worker() -> None:
        with turn:
            verdicts.append(send(gate, clock, 503, latency=0.0))
        done.wait()  # alive until all have answered: three workers, three thread ids

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert verdicts == [False, False, True]
    assert gate.concurrency == 4


@pytest.mark.parametrize("prefix", ["", "X-"])
def test_rate_limit_headers_hold_requests_before_the_limit(clock: Clock, prefix: str) -> None:
    gate = RequestGate(max_concurrency=8)
    sent_at = gate.wait_turn()
    busy = gate.wait_turn()  # another request still in flight
    headers = {
        f"{prefix}RateLimit-Limit": "20",
        f"{prefix}RateLimit-Remaining": "1",
        f"{prefix}RateLimit-Reset": "1",
    }
    clock.time += 0.03
    assert gate.finished(sent_at, answer(200, headers)) is False
    gate.finished(busy, answer(200))
    before = clock.time
    gate.wait_turn()
    # One left and one in flight: wait for a token, at the bucket's refill rate (19 in 1 s).
    assert clock.time - before == pytest.approx(1 / 19, rel=0.01)
    assert gate.found() is not None
    assert "headers" in (gate.found() or "")


def test_an_epoch_reset_is_read_as_a_time(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    sent_at = gate.wait_turn()
    reset = str(round(time.time()) + 30)
    gate.finished(sent_at, answer(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}))
    before = clock.time
    gate.wait_turn()
    assert clock.time - before == pytest.approx(30, abs=1)


def policy(gate: RequestGate) -> RetryPolicy:
    return RetryPolicy(
        label="Perform & Engage 365",
        who="Perform & Engage 365 stream 's'",
        provider="perform_engage",
        api_url="https://api.example.com/v2",
        gate=gate,
        max_tries=6,
        timeout=30,
        max_retry_after=600,
        waits=lambda: iter([0.5, 1.0, 2.0, 4.0, 8.0]),
        logger=logging.getLogger("tests.rate"),
        on_retry=lambda: None,
    )


def failing(statuses: list[int], retry_after: str | None) -> t.Callable[[], requests.Response]:
    from singer_sdk.exceptions import RetriableAPIError  # noqa: PLC0415

    def send() -> requests.Response:
        status = statuses.pop(0)
        response = answer(status, {"Retry-After": retry_after} if retry_after else {})
        if status >= 429:
            raise RetriableAPIError(f"HTTP {status}", response)
        return response

    return send


def test_a_lone_503_with_retry_after_waits_alone(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    request = requests.Request("GET", "https://api.example.com/v2/x").prepare()
    response = policy(gate).call(request, failing([503, 200], "7"))
    assert response.status_code == 200
    assert clock.slept == [7.0], "the request that got it waits its Retry-After"
    other = clock.time
    gate.wait_turn()  # another worker: not held
    assert clock.time == other


def test_a_429_pauses_every_worker(clock: Clock) -> None:
    gate = RequestGate(max_concurrency=8)
    request = requests.Request("GET", "https://api.example.com/v2/x").prepare()
    clock_before = clock.time
    gate.wait_turn()  # a request in flight elsewhere
    policy(gate).call(request, failing([429, 200], "3"))
    assert clock.slept == [3.0]
    assert clock.time - clock_before == pytest.approx(3.0)


def test_retry_after_zero_still_backs_off(clock: Clock) -> None:
    """Issue 28 row 9: `429` with `Retry-After: 0` forever once made 6 requests in 9 ms."""
    gate = RequestGate(max_concurrency=8)
    request = requests.Request("GET", "https://api.example.com/v2/x").prepare()
    statuses = [429] * 5 + [200]
    policy(gate).call(request, failing(statuses, "0"))
    assert clock.slept[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_progress_reports_the_rate_only_when_a_limit_was_met(clock: Clock) -> None:
    progress = Progress(logging.getLogger("tests.rate"), interval=0)
    quiet, limited = RequestGate(max_concurrency=8), RequestGate(max_concurrency=8)
    progress.watch("onQ", quiet)
    progress.watch("Perform & Engage 365", limited)
    for _ in range(20):
        send(quiet, clock, 200)
        send(limited, clock, 200)
    send(limited, clock, 429)
    limited.wait_turn()
    assert quiet.holding_back() is None
    assert limited.holding_back() == "about 9 requests/s allowed by the API, 1 in flight"
    summary = progress.summary()
    assert "onQ" not in summary
    assert "Perform & Engage 365: rate limit met: about 9 requests/s allowed" in summary
