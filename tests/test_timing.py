"""Unknown tokens and wrong secrets fail the same way, in the same time.

Why they cannot differ here: a token string carries no separate identifier.
The whole string is the secret, and its keyed digest (HMAC-SHA-256) is the
only lookup key: one indexed query by digest, with no "find the token, then
compare its secret" step. A wrong secret for an existing token is therefore
indistinguishable from a token that never existed: both are a digest that
matches no row, found by the same single lookup, then the same refusal. There
is no early exit that could tell an attacker "right token, wrong secret".

The tests show this mechanically (same calls, same arguments' shape, same
answers, byte for byte), then measure it: thousands of attempts of each kind,
interleaved in random order so load on the machine hits both alike, must give
overlapping time distributions. As a control, the same statistic must tell
apart a malformed token (rejected by its checksum, no query) from an unknown
one (one query), so the measurement can see a real difference when there is
one.

The mechanical tests run by default; the measurement (about 6,000
authentications) only with ``-m slow``, as it adds nothing they do not prove
and is slow on shared CI machines.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import current_app
from flask import Flask
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import InvalidToken
from flask_accesstokens import token_rejected
from flask_accesstokens import tokenformat
from flask_accesstokens.pipeline import Pipeline

#: Attempts of each kind in the timing tests.
SAMPLES = 2000


def forge(secret: str, position: int = 10) -> str:
    """The same token with one character of its random part changed, and a
    checksum that matches again: "an existing token, wrong secret", as it
    would look to anyone who cannot see the database."""
    body = secret[: -tokenformat.CHECKSUM_LENGTH]
    char = "A" if body[position] != "A" else "B"
    body = body[:position] + char + body[position + 1 :]
    return body + tokenformat._checksum(body)


def unknown() -> str:
    return tokenformat.generate("bbat")


def malformed(secret: str) -> str:
    """A typo: the checksum no longer matches."""
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


@pytest.fixture
def secret(tokens: AccessTokens) -> str:
    return tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    ).secret


@pytest.fixture
def lookups(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every digest list the store looks up, as the store passes it."""
    store = Pipeline.of(current_app)
    calls: list[list[str]] = []
    real = store.store.find

    def find(digests: list[str]) -> Any:
        calls.append(list(digests))
        return real(digests)

    monkeypatch.setattr(store.store, "find", find)
    return calls


def rejection(app: Flask, attempt: str) -> tuple[Any, ...]:
    """What refusing ``attempt`` does: the exception, and the signal's
    arguments (reason and token)."""
    store = Pipeline.of(current_app)
    seen: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    with token_rejected.connected_to(receive, app):
        with pytest.raises(InvalidToken) as raised:
            store.authenticate(attempt, "203.0.113.9")
    return type(raised.value), raised.value.description, seen


def test_wrong_secret_and_unknown_token_take_one_path(
    app: Flask, secret: str, lookups: list[list[str]]
) -> None:
    store = Pipeline.of(current_app)
    wrong, never = forge(secret), unknown()
    assert tokenformat.is_well_formed(wrong, "bbat") and wrong != secret

    assert rejection(app, wrong) == rejection(app, never)
    # One lookup each, with one digest per key (here one key), and no other
    # query: nothing looks the token up "by id" first.
    assert [len(digests) for digests in lookups] == [1, 1]
    assert lookups[0] == store.state.digester.candidates(wrong)
    assert lookups[1] == store.state.digester.candidates(never)
    # The reason reaches signals only, and it is the same for both.
    assert rejection(app, wrong)[2] == [
        {"reason": "unknown", "token_id": None, "client": "203.0.113.9"}
    ]

    lookups.clear()
    rejection(app, malformed(secret))
    rejection(app, "bbat_short")
    assert lookups == []  # garbage never reaches the database

    lookups.clear()
    store.authenticate(secret, None)
    assert len(lookups) == 1  # the valid token costs the same one lookup


def test_both_get_the_same_answer(client: Any, secret: str, lookups: list[list[str]]) -> None:
    answers = []
    for attempt in (forge(secret), unknown(), forge(secret, position=30)):
        response = client.get("/repositories/acme/api", headers=bearer(attempt))
        answers.append((response.status_code, sorted(response.headers.items()), response.data))
    assert answers[0][0] == 401
    assert answers[0] == answers[1] == answers[2]
    assert len(lookups) == 3


def timings(kinds: dict[str, Callable[[], str]], authenticate: Callable[[str], Any]) -> Any:
    """Nanoseconds per attempt for each kind, measured in one shuffled
    sequence, so drift in machine load hits every kind alike."""
    order = [kind for kind in kinds for _ in range(SAMPLES)]
    random.Random(5).shuffle(order)
    attempts = [(kind, kinds[kind]()) for kind in order]
    for _, attempt in attempts[:200]:  # warm up connections and caches
        authenticate(attempt)
    samples: dict[str, list[int]] = {kind: [] for kind in kinds}
    clock = time.perf_counter_ns
    for kind, attempt in attempts:
        start = clock()
        authenticate(attempt)
        samples[kind].append(clock() - start)
    return samples


def superiority(a: list[int], b: list[int]) -> float:
    """P(a draw from ``a`` is slower than one from ``b``), ties counting half:
    the Mann-Whitney U statistic scaled to 0..1. 0.5 means the distributions
    overlap completely; 0 or 1 means they do not overlap at all."""
    ranked = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    rank_sum = 0.0
    i = 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average = (i + 1 + j) / 2
        rank_sum += average * sum(1 for k in range(i, j) if ranked[k][1] == 0)
        i = j
    u = rank_sum - len(a) * (len(a) + 1) / 2
    return u / (len(a) * len(b))


def describe(samples: dict[str, list[int]]) -> str:
    parts = []
    for kind, values in samples.items():
        q = statistics.quantiles(values, n=4)
        parts.append(f"{kind}: median {q[1] / 1000:.1f}us, IQR {(q[2] - q[0]) / 1000:.1f}us")
    return "; ".join(parts)


@pytest.mark.slow
def test_timing_distributions_overlap(app: Flask, secret: str) -> None:
    """Wrong secret vs unknown token: indistinguishable by time.

    The thresholds are generous on purpose: the test runs on loaded 2-core CI
    machines. Under the null hypothesis, with 2,000 samples each, the
    statistic's standard deviation is about 0.009, so [0.4, 0.6] is more than
    ten of them; a path that skipped or added the lookup (as malformed
    tokens do) lands near 0 or 1, as the control below shows.
    """
    store = Pipeline.of(current_app)

    def authenticate(attempt: str) -> None:
        try:
            store.authenticate(attempt, None)
        except InvalidToken:
            pass
        else:
            raise AssertionError("a forged token was accepted")

    samples = timings(
        {
            "wrong_secret": lambda: forge(secret, random.randrange(5, 48)),
            "unknown": unknown,
            "malformed": lambda: malformed(unknown()),
        },
        authenticate,
    )
    summary = describe(samples)
    same = superiority(samples["wrong_secret"], samples["unknown"])
    assert 0.4 < same < 0.6, f"distributions differ ({same:.3f}): {summary}"
    pooled = sorted(samples["wrong_secret"] + samples["unknown"])
    q1, _, q3 = statistics.quantiles(pooled, n=4)
    gap = abs(statistics.median(samples["wrong_secret"]) - statistics.median(samples["unknown"]))
    assert gap < 0.5 * (q3 - q1), f"medians {gap}ns apart: {summary}"

    # The control: the same measurement does see one lookup less.
    control = superiority(samples["malformed"], samples["unknown"])
    assert control < 0.2, f"the measurement cannot see a skipped lookup ({control:.3f}): {summary}"
