"""Observation encoding: canonical and unambiguous; signatures bind every field; exact prices."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import InvalidObservationError
from common.observation import (
    DOMAIN,
    MAX_PRICE_E8,
    TAG,
    ObservationPayload,
    decode_observation,
    e8_to_double,
    e8_to_price,
    encode_observation,
    observation_digest,
    price_to_e8,
    quantize_e8,
    sign_observation,
    verify_observation,
)
from common.schnorr import SigningKey, tagged_hash, verify

KEY = SigningKey(bytes.fromhex("11" * 32))
OTHER_KEY = SigningKey(bytes.fromhex("22" * 32))


def payload(**changes: Any) -> ObservationPayload:
    values: dict[str, Any] = {
        "node_id": "oracle-node-1",
        "exchange": "binance",
        "base": "BTC",
        "quote": "USDT",
        "symbol": "BTCUSDT",
        "minute": 1_764_547_200,
        "price_e8": 9_731_245_000_000,
        "simulated": False,
    }
    values.update(changes)
    return ObservationPayload(**values)


def _text(alphabet: str, min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


_DIGITS = "0123456789"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = _LOWER.upper()
payloads = st.builds(
    ObservationPayload,
    node_id=st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_LOWER + _UPPER + _DIGITS),
        _text(_LOWER + _UPPER + _DIGITS + "._:@-", 0, 63),
    ),
    exchange=st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_LOWER + _DIGITS),
        _text(_LOWER + _DIGITS + "_-", 0, 31),
    ),
    base=_text(_UPPER + _DIGITS, 1, 16),
    quote=_text(_UPPER + _DIGITS, 1, 16),
    symbol=_text(_LOWER + _UPPER + _DIGITS + "/_.-", 0, 32),
    minute=st.integers(1, (2**63 - 1) // 60).map(lambda n: n * 60),
    price_e8=st.integers(1, MAX_PRICE_E8),
    simulated=st.booleans(),
)


@given(payloads)
def test_every_valid_payload_round_trips_through_its_encoding(original: ObservationPayload) -> None:
    assert decode_observation(encode_observation(original)) == original


@given(payloads, payloads)
def test_different_payloads_never_share_an_encoding_or_a_digest(
    first: ObservationPayload, second: ObservationPayload
) -> None:
    if first != second:
        assert encode_observation(first) != encode_observation(second)
        assert observation_digest(first) != observation_digest(second)


def test_moving_characters_between_adjacent_fields_changes_the_bytes() -> None:
    # Without length bytes "oracle-1"+"binance" and "oracle-1b"+"inance" would concatenate alike.
    assert encode_observation(payload(node_id="node-a", exchange="binance")) != encode_observation(
        payload(node_id="node-ab", exchange="inance")
    )
    assert encode_observation(payload(base="BTC", quote="USD")) != encode_observation(
        payload(base="BT", quote="CUSD")
    )


def test_encoding_layout_starts_with_domain_and_version_and_ends_fixed_width() -> None:
    data = encode_observation(payload(simulated=True))
    assert data.startswith(DOMAIN + b"\x01\x0doracle-node-1")
    assert data[-17:] == (
        (1_764_547_200).to_bytes(8, "big") + (9_731_245_000_000).to_bytes(8, "big") + b"\x01"
    )
    assert TAG == "btcfi-oracle/observation/v1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("node_id", ""),
        ("node_id", "n" * 65),
        ("node_id", "-starts-with-dash"),
        ("node_id", "has space"),
        ("node_id", "nœud"),
        ("node_id", "node\n"),
        ("exchange", ""),
        ("exchange", "Binance"),
        ("exchange", "b" * 33),
        ("exchange", "kraken\u0663"),  # an Arabic-Indic digit: \d would match it, [0-9] does not
        ("base", ""),
        ("base", "btc"),
        ("base", "B" * 17),
        ("quote", "US D"),
        ("quote", "ＵＳＤ"),  # fullwidth letters  # noqa: RUF001 (that is the point)
        ("symbol", "BTC USD"),
        ("symbol", "S" * 33),
        ("symbol", "BTC\x00"),
        ("minute", 0),
        ("minute", -60),
        ("minute", 1_764_547_201),
        ("minute", 2**63 + 60),
        ("minute", True),
        ("minute", 1_764_547_200.0),
        ("price_e8", 0),
        ("price_e8", -1),
        ("price_e8", MAX_PRICE_E8 + 1),
        ("price_e8", 1.5),
        ("price_e8", True),
        ("simulated", 1),
        ("simulated", "false"),
        ("node_id", b"oracle-node-1"),
    ],
)
def test_a_payload_that_could_not_be_encoded_is_refused_naming_the_field(
    field: str, value: object
) -> None:
    with pytest.raises(InvalidObservationError) as caught:
        payload(**{field: value})
    assert caught.value.field == field


def test_empty_symbol_is_allowed_as_the_wire_allows_it() -> None:
    assert decode_observation(encode_observation(payload(symbol=""))).symbol == ""


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda data: b"btcfi-oracle/observatioN" + data[24:], "domain"),
        (lambda data: data[:24] + b"\x02" + data[25:], "version"),
        (lambda data: data[:24], "version"),
        (lambda data: data[:-1], "length"),
        (lambda data: data + b"\x00", "length"),
        (lambda data: data[:-1] + b"\x02", "simulated"),
        (lambda data: data[:25] + b"\xff" + data[26:], "truncated"),
        (lambda data: data[:26] + b"\xc3" + data[27:], "ASCII"),
        (lambda data: data[:26] + b" " + data[27:], "node_id"),
        (lambda data: data[:30], "truncated"),
        (lambda data: b"", "domain"),
    ],
)
def test_decode_refuses_anything_but_a_canonical_encoding(mutate: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_observation(mutate(encode_observation(payload())))


def test_a_signature_verifies_for_its_payload_and_key_only() -> None:
    original = payload()
    signature = sign_observation(KEY, original)
    assert len(signature) == 64
    assert verify_observation(KEY.public_key, original, signature)
    assert not verify_observation(OTHER_KEY.public_key, original, signature)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("node_id", "oracle-node-2"),
        ("exchange", "coinbase"),
        ("base", "USDT"),
        ("quote", "USD"),
        ("symbol", "BTCUSDC"),
        ("minute", 1_764_547_260),
        ("price_e8", 9_731_245_000_001),
        ("simulated", True),
    ],
)
def test_changing_any_signed_field_breaks_the_signature(field: str, value: object) -> None:
    signature = sign_observation(KEY, payload())
    assert not verify_observation(KEY.public_key, payload(**{field: value}), signature)


def test_the_signature_is_bound_to_the_observation_tag() -> None:
    original = payload()
    foreign = KEY.sign(tagged_hash("btcfi-oracle/report/v1", encode_observation(original)))
    assert verify(
        KEY.public_key, tagged_hash("btcfi-oracle/report/v1", encode_observation(original)), foreign
    )
    assert not verify_observation(KEY.public_key, original, foreign)


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [(b"", b""), (b"\x00" * 32, b"\x00" * 64), (b"\xff" * 32, b"\x01" * 64), (b"\x02" * 33, b"")],
)
def test_malformed_keys_and_signatures_are_a_failed_check(
    public_key: bytes, signature: bytes
) -> None:
    assert verify_observation(public_key, payload(), signature) is False


def test_zero_aux_is_deterministic_and_default_aux_is_fresh() -> None:
    zero = sign_observation(KEY, payload(), aux=bytes(32))
    assert zero == sign_observation(KEY, payload(), aux=bytes(32))
    assert sign_observation(KEY, payload()) != sign_observation(KEY, payload())
    with pytest.raises(ValueError, match="32 bytes"):
        sign_observation(KEY, payload(), aux=b"\x00" * 31)


@pytest.mark.parametrize(
    ("text", "e8"),
    [
        ("97312.45", 9_731_245_000_000),
        ("106375.12345678", 10_637_512_345_678),
        ("0.00000001", 1),
        ("1", 100_000_000),
        ("1.000000000000", 100_000_000),
        ("1E+3", 100_000_000_000),
        ("0.99985", 99_985_000),
        ("10000000000", MAX_PRICE_E8),
    ],
)
def test_price_to_e8_is_exact(text: str, e8: int) -> None:
    assert price_to_e8(Decimal(text)) == e8
    assert e8_to_price(e8) == Decimal(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "finite"),
        ("sNaN", "finite"),
        ("Infinity", "finite"),
        ("-Infinity", "finite"),
        ("0", "> 0"),
        ("-0", "> 0"),
        ("-1", "> 0"),
        ("10000000000.00000001", "ceiling"),
        ("1E+999999999", "ceiling"),
        ("0.000000001", "more than 8 decimals"),
        ("97312.123456789", "more than 8 decimals"),
        ("1E-999999999", "more than 8 decimals"),
    ],
)
def test_price_to_e8_refuses_what_it_cannot_represent_exactly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        price_to_e8(Decimal(text))


def test_price_to_e8_refuses_a_float() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        price_to_e8(97312.45)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "rounded"),
    [
        ("97312.450000005", "97312.45000000"),  # half: to even (0)
        ("97312.450000015", "97312.45000002"),  # half: to even (2)
        ("97312.4500000051", "97312.45000001"),
        ("1.23", "1.23000000"),
        ("0.000000004", "0E-8"),  # rounds to zero: price_to_e8 then refuses it
    ],
)
def test_quantize_e8_rounds_half_to_even(text: str, rounded: str) -> None:
    assert str(quantize_e8(Decimal(text))) == rounded


def test_quantize_e8_refuses_non_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        quantize_e8(Decimal("NaN"))


@given(st.integers(1, MAX_PRICE_E8))
def test_e8_round_trips_and_the_double_is_the_nearest(e8: int) -> None:
    exact = e8_to_price(e8)
    assert price_to_e8(exact) == e8
    assert e8_to_double(e8) == float(exact)


@given(
    st.decimals(
        allow_nan=False,
        allow_infinity=False,
        min_value=Decimal("0.00000001"),
        max_value=Decimal(10**10),
    )
)
def test_any_quantized_price_in_range_converts(price: Decimal) -> None:
    rounded = quantize_e8(price)
    if rounded > 0:
        assert e8_to_price(price_to_e8(rounded)) == rounded


@pytest.mark.parametrize("value", [0, -1, MAX_PRICE_E8 + 1, True])
def test_e8_to_price_refuses_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="price_e8"):
        e8_to_price(value)


def test_payload_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        payload().price_e8 = 1  # type: ignore[misc]
