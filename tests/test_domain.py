"""The domain: addresses and token ids (bech32m via chia-wallet-sdk), assets, units and deltas."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.domain import (
    XCH,
    XCH_ASSET,
    AddressError,
    Asset,
    AssetDelta,
    Observation,
    apply_deltas,
    asset_id_of_token,
    compute_deltas,
    decode_bech32m,
    encode_bech32m,
    is_asset_id,
    normalize_address,
    puzzle_hash,
    token_id,
    units,
)

# From spacescan-api.md: the API docs' example address, the burn address and the token id pair.
MAINNET = "xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8"
BURN = "xch1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqm6ks6e8mvy"
BURN_PUZZLE_HASH = bytes.fromhex("00" * 30 + "dead")
TOKEN = "tkn1zj6qjckla7qaj49vpkft28kzrnn6ekxx9hvla7fs82j3cc2ukj2ssa84km"

# An independent BIP-350 encoder for arbitrary 5-bit words and checksum constants: an oracle for
# the SDK, and a way to build strings it must refuse (bech32 checksums, bad padding, other sizes)
# but never emits.
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_BECH32 = 1
_BECH32M = 0x2BC830A3


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GEN[i] if (top >> i) & 1 else 0
    return chk


def _encode_words(hrp: str, words: list[int], const: int = _BECH32M) -> str:
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = _polymod(expanded + words + [0] * 6) ^ const
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[w] for w in words + checksum)


def _to_words(payload: bytes) -> list[int]:
    bits = "".join(f"{b:08b}" for b in payload)
    bits += "0" * (-len(bits) % 5)
    return [int(bits[i : i + 5], 2) for i in range(0, len(bits), 5)]


def reason(call: Callable[[], object]) -> str:
    """The message of the AddressError ``call`` raises (one line)."""
    with pytest.raises(AddressError) as info:
        call()
    message = str(info.value)
    assert message
    assert "\n" not in message
    return message


# --- BIP-350 test vectors ------------------------------------------------------------------------
# Valid vectors pass the checksum; none carries a 32-byte payload, so each is refused for its size
# (which the SDK only reports once the checksum has passed).

BIP350_VALID = [
    ("A1LQFN3A", 0),
    ("a1lqfn3a", 0),
    ("an83characterlonghumanreadablepartthatcontainsthe"
     "theexcludedcharactersbioandnumber11sg7hg6", 0),
    ("abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx", 20),
    ("split1checkupstagehandshakeupstreamerranterredcaperredlc445v", 30),
    ("?1v759aa", 0),
]  # fmt: skip


@pytest.mark.parametrize(("vector", "size"), BIP350_VALID)
def test_bip350_valid_vectors_pass_the_checksum_and_fail_on_size(vector: str, size: int) -> None:
    assert reason(lambda: decode_bech32m(vector)) == f"payload is {size} bytes, expected 32"


def test_bip350_valid_vector_with_nonzero_padding_passes_the_checksum() -> None:
    # 82 words of 31: a valid bech32m string whose leftover bits are set, so not 8-bit data.
    message = reason(lambda: decode_bech32m("11" + "l" * 83 + "udsr8"))
    assert "padding" in message
    assert "checksum" not in message


def test_bip350_valid_vectors_agree_with_the_independent_encoder() -> None:
    # The oracle below must itself be BIP-350: it reproduces the published valid vectors.
    assert _encode_words("a", []) == "a1lqfn3a"
    assert _encode_words("abcdef", list(range(31, -1, -1))) == (
        "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx"
    )
    assert _encode_words("1", [31] * 82) == "11" + "l" * 83 + "udsr8"


@pytest.mark.parametrize(
    ("vector", "fragment"),
    [
        ("\x20" + "1xj0phk", "invalid character"),
        ("\x7f" + "1g6xzxy", "not a bech32m string"),
        ("\x80" + "1vctc34", "not a bech32m string"),
        ("an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
         "invalid length"),
        ("qyrz8wqd2c9m", "missing separator '1'"),
        ("1qyrz8wqd2c9m", "invalid length"),
        ("y1b0jsk6g", "invalid character"),
        ("lt1igcx5c0", "invalid character"),
        ("in1muywd", "invalid length"),
        ("mm1crxm3i", "invalid character"),
        ("au1s5cgom", "invalid character"),
        ("M1VUXWEZ", "bad checksum"),
        ("16plkw9", "invalid length"),
        ("1p2gdwpf", "invalid length"),
    ],
)  # fmt: skip
def test_bip350_invalid_vectors_fail_on_checksum_or_format(vector: str, fragment: str) -> None:
    message = reason(lambda: decode_bech32m(vector))
    assert fragment in message
    assert "payload is" not in message


@pytest.mark.parametrize("vector", ["A12UEL5L", "a12uel5l"])
def test_bip173_bech32_vectors_are_rejected_as_bech32(vector: str) -> None:
    assert reason(lambda: decode_bech32m(vector)) == "bech32 checksum, expected bech32m"


# --- Real Chia data ------------------------------------------------------------------------------


def test_docs_address_decodes_to_the_puzzle_hash_the_algorithm_gives() -> None:
    prefix, payload = decode_bech32m(MAINNET)
    assert prefix == "xch"
    assert len(payload) == 32
    assert _encode_words("xch", _to_words(payload)) == MAINNET
    assert encode_bech32m("xch", payload) == MAINNET
    assert puzzle_hash(MAINNET, "xch") == payload
    assert puzzle_hash(MAINNET.upper(), "xch") == payload


def test_burn_address_decodes_to_dead() -> None:
    assert decode_bech32m(BURN) == ("xch", BURN_PUZZLE_HASH)
    assert puzzle_hash(BURN, "xch") == BURN_PUZZLE_HASH
    assert encode_bech32m("xch", BURN_PUZZLE_HASH) == BURN


def test_docs_token_id_pair() -> None:
    asset_id = asset_id_of_token(TOKEN)
    assert len(asset_id) == 64
    assert asset_id.startswith("14b40962")
    assert asset_id.endswith("5cb495")
    assert is_asset_id(asset_id)
    assert token_id(asset_id) == TOKEN
    assert Asset(asset_id).token_id == TOKEN
    assert asset_id_of_token(TOKEN.upper()) == asset_id


def test_testnet_address_is_63_characters_and_needs_its_prefix() -> None:
    testnet = encode_bech32m("txch", BURN_PUZZLE_HASH)
    assert len(testnet) == 63
    assert len(BURN) == 62
    assert puzzle_hash(testnet, "txch") == BURN_PUZZLE_HASH
    assert reason(lambda: puzzle_hash(testnet, "xch")) == "expected prefix 'xch', got 'txch'"
    assert reason(lambda: puzzle_hash(MAINNET, "txch")) == "expected prefix 'txch', got 'xch'"


def test_an_address_is_not_a_token_id() -> None:
    assert reason(lambda: asset_id_of_token(MAINNET)) == "expected prefix 'tkn', got 'xch'"
    assert reason(lambda: puzzle_hash(TOKEN, "xch")) == "expected prefix 'xch', got 'tkn'"


# --- Rejections ----------------------------------------------------------------------------------


def test_every_single_substitution_is_a_bad_checksum() -> None:
    # bech32m guarantees detection of any single-character error at these lengths.
    for pos in range(len("xch1"), len(MAINNET)):
        for char in CHARSET:
            if char != MAINNET[pos]:
                typo = MAINNET[:pos] + char + MAINNET[pos + 1 :]
                assert reason(partial(puzzle_hash, typo, "xch")) == "bad checksum"


@pytest.mark.parametrize("size", [0, 20, 31, 33, 64])
def test_wrong_payload_length(size: int) -> None:
    address = _encode_words("xch", _to_words(bytes(range(size))))
    expected = f"payload is {size} bytes, expected 32"
    assert reason(lambda: puzzle_hash(address, "xch")) == expected
    assert reason(lambda: normalize_address(address, "xch")) == expected


def test_mixed_case() -> None:
    assert reason(lambda: puzzle_hash("XCH" + MAINNET[3:], "xch")) == "mixed case"
    assert reason(lambda: puzzle_hash(MAINNET[:-2] + MAINNET[-2:].upper(), "xch")) == "mixed case"


def test_missing_separator() -> None:
    assert reason(lambda: decode_bech32m("xch" + MAINNET[4:])) == "missing separator '1'"


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_text(text: str) -> None:
    assert reason(lambda: normalize_address(text, "xch")) == "not a bech32m string"
    assert reason(lambda: decode_bech32m("")) == "not a bech32m string"


@pytest.mark.parametrize(
    "text",
    [
        MAINNET.replace("c", "\u0441", 1),  # Cyrillic es, looks like Latin c
        MAINNET[:10] + "\u200b" + MAINNET[10:],  # zero-width space
        MAINNET[:10] + "\x1b[31m" + MAINNET[10:],  # an ANSI escape
        MAINNET + "\x00",
    ],
)
def test_non_ascii_or_unprintable_text_is_refused_before_decoding(text: str) -> None:
    assert reason(lambda: normalize_address(text, "xch")) == "not a bech32m string"


def test_bech32_checksum_is_rejected() -> None:
    words = _to_words(BURN_PUZZLE_HASH)
    assert _encode_words("xch", words) == BURN  # the oracle encodes the real address
    bech32_address = _encode_words("xch", words, _BECH32)
    expected = "bech32 checksum, expected bech32m"
    assert reason(lambda: puzzle_hash(bech32_address, "xch")) == expected


def test_padding_errors() -> None:
    words = _to_words(BURN_PUZZLE_HASH)  # 52 words: 256 bits + 4 zero padding bits
    nonzero = _encode_words("xch", [*words[:-1], words[-1] | 1])
    excess = _encode_words("xch", [*words, 0, 0])
    for bad in (nonzero, excess, _encode_words("a", [0])):
        message = reason(partial(decode_bech32m, bad))
        assert "padding" in message
        assert "checksum" not in message


def test_surrounding_whitespace_is_only_stripped_by_normalize() -> None:
    assert "invalid character" in reason(lambda: decode_bech32m(f" {MAINNET}"))
    assert normalize_address(f" \t{MAINNET.upper()}\n", "xch") == MAINNET
    assert puzzle_hash(f" {MAINNET}\n", "xch") == decode_bech32m(MAINNET)[1]


def test_normalize_rejects_an_address_of_another_network() -> None:
    assert reason(lambda: normalize_address(MAINNET, "txch")) == "expected prefix 'txch', got 'xch'"


def test_encode_lowercases_the_prefix_and_refuses_what_it_cannot_encode() -> None:
    assert encode_bech32m("XCH", BURN_PUZZLE_HASH) == BURN
    with pytest.raises(ValueError, match="32 bytes"):
        encode_bech32m("xch", bytes(31))
    with pytest.raises(ValueError, match="invalid character"):
        encode_bech32m("x h", BURN_PUZZLE_HASH)


# --- Asset ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ab" * 32, True),
        ("0" * 64, True),
        ("0123456789abcdef" * 4, True),
        ("AB" * 32, False),  # lowercase only: the canonical form tracker stores
        ("ab" * 31 + "aB", False),
        ("ab" * 31, False),
        ("ab" * 33, False),
        ("0x" + "ab" * 31, False),
        ("ab" * 32 + "\n", False),
        (" " + "ab" * 32, False),
        ("g" + "a" * 63, False),
        ("\uff10" * 64, False),  # fullwidth digit zero
        ("\u0661" * 64, False),  # Arabic-Indic digit one
        ("", False),
    ],
)
def test_is_asset_id(text: str, expected: bool) -> None:
    assert is_asset_id(text) is expected


@pytest.mark.parametrize("bad", ["", "ab" * 31, "0x" + "ab" * 31, "zz" * 32, "AB" * 32, XCH])
def test_token_id_rejects_what_is_not_an_asset_id(bad: str) -> None:
    assert "asset id must be 64 lowercase hex characters" in reason(lambda: token_id(bad))


# --- Assets, units, observations -----------------------------------------------------------------


def test_xch_has_twelve_decimals_and_a_cat_three() -> None:
    cat = Asset("ab" * 32, "Spacebucks", "SBX")
    assert Asset(XCH, "Chia", "XCH") == XCH_ASSET
    assert XCH_ASSET.decimals == 12
    assert Asset(XCH).decimals == 12
    assert cat.decimals == 3
    assert XCH_ASSET.token_id is None
    assert cat.token_id == token_id("ab" * 32)
    assert XCH_ASSET.units(1_234_567_891_234) == Decimal("1.234567891234")
    assert cat.units(1_500) == Decimal("1.500")
    assert str(cat.units(1_500)) == "1.500"


def test_display_is_the_symbol_else_the_asset_id() -> None:
    assert Asset("ab" * 32, "Spacebucks", "SBX").display == "SBX"
    assert Asset("ab" * 32, "Spacebucks").display == "ab" * 32


@pytest.mark.parametrize(
    ("mojos", "decimals", "text"),
    [
        (0, 12, "0.000000000000"),
        (1, 12, "1E-12"),
        (1, 3, "0.001"),
        (-1_500, 3, "-1.500"),
        (2**63 - 1, 12, "9223372.036854775807"),
        (2**63 - 1, 3, "9223372036854775.807"),
        # A portfolio total may pass 28 digits (Decimal's default precision): still exact.
        (10**40 + 1, 12, "10000000000000000000000000000.000000000001"),
    ],
)
def test_units_are_exact(mojos: int, decimals: int, text: str) -> None:
    result = units(mojos, decimals)
    assert result == Decimal(text)  # Decimal comparison is exact, whatever the context
    assert result.as_tuple().exponent == -decimals


def written_out(mojos: int, decimals: int) -> str:
    """``mojos`` as units, by integer arithmetic only: the oracle for :func:`units`."""
    whole, fraction = divmod(abs(mojos), 10**decimals)
    return f"{'-' if mojos < 0 else ''}{whole}.{fraction:0{decimals}d}"


@settings(max_examples=200, deadline=None)
@given(mojos=st.integers(min_value=-(10**40), max_value=10**40), decimals=st.sampled_from([3, 12]))
def test_units_round_trip_to_the_same_mojos(mojos: int, decimals: int) -> None:
    result = units(mojos, decimals)
    assert result == Decimal(written_out(mojos, decimals))
    assert result.as_tuple().exponent == -decimals


def test_observation_names_its_assets() -> None:
    at = datetime(2026, 11, 24, tzinfo=UTC)
    sbx = Asset("ab" * 32, "Spacebucks", "SBX")
    observation = Observation(MAINNET, at, at, {XCH: 5, sbx.asset_id: 7}, {sbx.asset_id: sbx})
    assert observation.asset(sbx.asset_id) is sbx
    assert observation.asset(XCH) == XCH_ASSET
    assert observation.asset("cd" * 32) == Asset("cd" * 32)
    assert Observation(MAINNET, at, at, {}).assets == {}


# --- Deltas --------------------------------------------------------------------------------------


def test_baseline_has_no_deltas() -> None:
    assert compute_deltas(None, {"xch": 5, "a": 1}) == []


def test_unchanged_assets_get_no_row() -> None:
    assert compute_deltas({"xch": 5, "a": 1}, {"xch": 5, "a": 1}) == []


def test_changed_appeared_and_disappeared() -> None:
    deltas = compute_deltas({"xch": 5, "gone": 7}, {"xch": 8, "new": 3})
    assert sorted(deltas, key=lambda d: d.asset) == [
        AssetDelta("gone", 7, 0),
        AssetDelta("new", 0, 3),
        AssetDelta("xch", 5, 8),
    ]
    assert {d.asset: d.delta_mojos for d in deltas} == {"gone": -7, "new": 3, "xch": 3}


def test_zero_and_absent_are_the_same_balance() -> None:
    assert compute_deltas({"a": 0}, {}) == []
    assert compute_deltas({}, {"a": 0}) == []
    assert compute_deltas({"a": 4}, {"a": 0}) == [AssetDelta("a", 4, 0)]


def test_apply_deltas_drops_zero_balances() -> None:
    assert apply_deltas({"a": 0, "b": 2}, []) == {"b": 2}
    assert apply_deltas({"a": 3}, [AssetDelta("a", 3, 0), AssetDelta("c", 0, 9)]) == {"c": 9}


balances = st.dictionaries(
    st.sampled_from(["xch", "a", "b", "c", "d"]), st.integers(min_value=0, max_value=2**63 - 1)
)


@settings(max_examples=100, deadline=None)
@given(st.lists(balances, min_size=1, max_size=12))
def test_replaying_deltas_reproduces_every_snapshot(snapshots: list[dict[str, int]]) -> None:
    state = dict(snapshots[0])
    for previous, current in itertools.pairwise(snapshots):
        deltas = compute_deltas(previous, current)
        assert len({d.asset for d in deltas}) == len(deltas)
        assert all(d.delta_mojos != 0 for d in deltas)
        state = apply_deltas(state, deltas)
        assert state == {asset: mojos for asset, mojos in current.items() if mojos}


# --- Properties ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(min_size=32, max_size=32), prefix=st.sampled_from(["xch", "txch", "tkn"]))
def test_round_trip(payload: bytes, prefix: str) -> None:
    address = encode_bech32m(prefix, payload)
    assert address == _encode_words(prefix, _to_words(payload))
    assert len(address) == len(prefix) + 59
    assert puzzle_hash(address, prefix) == payload
    assert puzzle_hash(address.upper(), prefix) == payload
    assert normalize_address(address.upper(), prefix) == address


_NEAR_MISS = st.text(alphabet=CHARSET + CHARSET.upper() + "1bio \u0441\x00")


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), _NEAR_MISS, st.just(MAINNET).map(lambda a: a + "q" * 200)))
def test_decoding_arbitrary_text_only_raises_address_error(text: str) -> None:
    # Anything other than AddressError escapes reason() and fails the test.
    for call in (
        lambda: decode_bech32m(text),
        lambda: puzzle_hash(text, "xch"),
        lambda: normalize_address(text, "txch"),
        lambda: token_id(text),
        lambda: asset_id_of_token(text),
    ):
        try:
            call()
        except AddressError as exc:
            message = str(exc)
        else:
            continue
        assert message
        assert "\n" not in message
