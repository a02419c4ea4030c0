"""The token string: secret scanners can find it, a typo never reaches the
database, and only a keyed digest is ever stored."""

from __future__ import annotations

import math
import re

import pytest

from flask_accesstokens import tokenformat

PREFIX = "bbat"
#: What a secret scanner would be configured with.
SCANNER = re.compile(r"\bbbat_[0-9A-Za-z]{49}\b")


def test_generated_token_has_prefix_body_and_checksum() -> None:
    token = tokenformat.generate(PREFIX)
    assert token.startswith("bbat_")
    assert len(token) == len("bbat_") + tokenformat.RANDOM_LENGTH + tokenformat.CHECKSUM_LENGTH
    assert all(c in tokenformat.BASE62 for c in token[5:])
    assert tokenformat.is_well_formed(token, PREFIX)


def test_a_secret_scanner_finds_a_leaked_token_in_text() -> None:
    token = tokenformat.generate(PREFIX)
    leaked = f"export BITBUCKET_TOKEN={token}\ncurl -H 'Authorization: Bearer {token}'"
    assert SCANNER.findall(leaked) == [token, token]


def test_random_part_carries_at_least_256_bits() -> None:
    assert tokenformat.RANDOM_LENGTH * math.log2(62) >= 256


def test_tokens_do_not_repeat() -> None:
    assert len({tokenformat.generate(PREFIX) for _ in range(2000)}) == 2000


def test_randomness_comes_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenformat.secrets, "choice", lambda seq: seq[7])
    assert tokenformat.generate(PREFIX)[5:48] == "7" * 43


def test_every_single_character_change_is_caught_by_the_checksum() -> None:
    token = tokenformat.generate(PREFIX)
    for i in range(len(PREFIX) + 1, len(token)):
        for c in "0aZ":
            if token[i] != c:
                typo = token[:i] + c + token[i + 1 :]
                assert not tokenformat.is_well_formed(typo, PREFIX), (i, c)


def test_two_swapped_characters_are_caught() -> None:
    token = tokenformat.generate(PREFIX)
    chars = list(token)
    i = next(i for i in range(5, len(token) - 1) if chars[i] != chars[i + 1])
    chars[i], chars[i + 1] = chars[i + 1], chars[i]
    assert not tokenformat.is_well_formed("".join(chars), PREFIX)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bbat_",
        "garbage",
        "bbat_" + "a" * 49,
        "x" * 54,
        "ghp_" + "a" * 50,
        "bbat-" + "a" * 49,
        "tökén" * 11,
    ],
)
def test_garbage_is_not_well_formed(value: str) -> None:
    assert not tokenformat.is_well_formed(value, PREFIX)


def test_trailing_or_leading_whitespace_is_not_well_formed() -> None:
    token = tokenformat.generate(PREFIX)
    assert not tokenformat.is_well_formed(token + " ", PREFIX)
    assert not tokenformat.is_well_formed(" " + token, PREFIX)
    assert not tokenformat.is_well_formed(token[:-1], PREFIX)


def test_non_base62_character_with_the_right_length_is_rejected() -> None:
    token = tokenformat.generate(PREFIX)
    assert not tokenformat.is_well_formed(token[:10] + "é" + token[11:], PREFIX)
    assert not tokenformat.is_well_formed(token[:10] + "-" + token[11:], PREFIX)


def test_a_token_of_another_prefix_is_not_well_formed() -> None:
    token = tokenformat.generate("acme")
    assert tokenformat.is_well_formed(token, "acme")
    assert not tokenformat.is_well_formed(token, PREFIX)


@pytest.mark.parametrize("prefix", ["bbat", "ab", "acme2", "a" * 16])
def test_good_prefixes(prefix: str) -> None:
    assert tokenformat.check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "a", "BBAT", "bb_at", "2bat", "a" * 17, "bb at", "bbat_"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="ACCESSTOKENS_TOKEN_PREFIX"):
        tokenformat.check_prefix(prefix)


def test_hint_is_the_last_four_characters() -> None:
    token = tokenformat.generate(PREFIX)
    assert tokenformat.hint(token) == token[-4:]


def test_ids_are_public_hex_and_unrelated_to_secrets() -> None:
    ids = {tokenformat.new_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(tokenformat.is_id(i) for i in ids)
    assert not tokenformat.is_id("../../etc")
    assert not tokenformat.is_id("A" * 32)
    assert not tokenformat.is_id(tokenformat.generate(PREFIX))


def test_digest_is_keyed_deterministic_and_not_the_secret() -> None:
    token = tokenformat.generate(PREFIX)
    a = tokenformat.Digester(["key one"])
    b = tokenformat.Digester(["key two"])
    assert a.digest(token) == tokenformat.Digester(["key one"]).digest(token)
    assert a.digest(token) != b.digest(token)
    assert re.fullmatch(r"[0-9a-f]{64}", a.digest(token))
    assert token not in a.digest(token)


def test_digest_is_not_a_plain_sha256() -> None:
    import hashlib

    token = tokenformat.generate(PREFIX)
    plain = hashlib.sha256(token.encode()).hexdigest()
    assert tokenformat.Digester(["k"]).digest(token) != plain


def test_candidates_use_every_key_newest_first() -> None:
    token = tokenformat.generate(PREFIX)
    rotated = tokenformat.Digester(["new", "old"])
    assert rotated.candidates(token) == [
        tokenformat.Digester(["new"]).digest(token),
        tokenformat.Digester(["old"]).digest(token),
    ]
    assert rotated.digest(token) == tokenformat.Digester(["new"]).digest(token)


def test_bytes_and_str_keys_agree() -> None:
    token = tokenformat.generate(PREFIX)
    assert tokenformat.Digester([b"k"]).digest(token) == tokenformat.Digester(["k"]).digest(token)


@pytest.mark.parametrize("keys", [[], [None], [""], [None, ""]])
def test_no_key_is_an_error_not_an_unkeyed_digest(keys: list[str]) -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        tokenformat.Digester(keys)
