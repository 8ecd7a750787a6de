from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.addresses import (
    CHARSET,
    AddressError,
    bech32m_decode,
    bech32m_decode_words,
    bech32m_encode,
    decode_address,
    is_asset_id,
    normalize_address,
    token_id,
)

MAINNET = "xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8"
BURN = "xch1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqm6ks6e8mvy"
BURN_PUZZLE_HASH = bytes.fromhex("00" * 30 + "dead")
TOKEN = "tkn1zj6qjckla7qaj49vpkft28kzrnn6ekxx9hvla7fs82j3cc2ukj2ssa84km"

# An independent encoder for arbitrary 5-bit words and checksum constants, so tests can
# build strings the module must refuse (bech32 checksums, bad padding) but never emits.
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


# --- BIP-350 test vectors -------------------------------------------------------------

BIP350_VALID = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11" + "l" * 83 + "udsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]


@pytest.mark.parametrize("vector", BIP350_VALID)
def test_bip350_valid_vectors_pass_checksum(vector: str) -> None:
    hrp, _ = bech32m_decode_words(vector)
    assert hrp == vector[: vector.rfind("1")].lower()


@pytest.mark.parametrize(
    "vector",
    [
        "A1LQFN3A",
        "a1lqfn3a",
        "?1v759aa",
        "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    ],
)
def test_bip350_valid_vectors_without_data_decode_to_empty_payload(vector: str) -> None:
    assert bech32m_decode(vector) == (vector[: vector.rfind("1")].lower(), b"")


def test_bip350_split_vector_decodes_to_whole_bytes() -> None:
    vector = "split1checkupstagehandshakeupstreamerranterredcaperredlc445v"
    hrp, payload = bech32m_decode(vector)
    assert hrp == "split"
    assert len(payload) == 30  # 48 words = 240 bits, no padding
    assert bech32m_encode(hrp, payload) == vector


def test_bip350_abcdef_vector_carries_the_alphabet_in_order() -> None:
    # Its data part is the 32 charset symbols in value order 31..0: exactly 20 bytes.
    hrp, words = bech32m_decode_words("abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx")
    assert (hrp, words) == ("abcdef", list(range(31, -1, -1)))
    assert bech32m_decode("abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx") == (
        "abcdef",
        bytes.fromhex("ffbbcdeb38bdab49ca307b9ac5a928398a418820"),
    )


def test_bip350_vector_with_nonzero_padding_is_not_a_byte_payload() -> None:
    # 82 words of 31 leave two set padding bits: valid bech32m, but not valid 8-bit data.
    vector = "11" + "l" * 83 + "udsr8"
    assert bech32m_decode_words(vector) == ("1", [31] * 82)
    with pytest.raises(AddressError, match="non-zero padding"):
        bech32m_decode(vector)


def test_no_overall_length_cap() -> None:
    # BIP-350 lists this 91-character string as invalid only because of BIP-173's 90-char
    # SegWit cap, which this generic decoder deliberately does not apply.
    vector = (
        "an84characterslonghumanreadablepartthatcontainsthe"
        "theexcludedcharactersbioandnumber11d6pts4"
    )
    assert len(vector) == 91
    assert bech32m_decode(vector) == (vector[: vector.rfind("1")], b"")
    long_payload = bytes(range(200))
    assert bech32m_decode(bech32m_encode("long", long_payload)) == ("long", long_payload)


@pytest.mark.parametrize(
    ("vector", "reason"),
    [
        ("\x20" + "1xj0phk", "invalid character ' '"),
        ("\x7f" + "1g6xzxy", "invalid character '\\\\x7f'"),
        ("\x80" + "1vctc34", "invalid character '\\\\x80'"),
        ("qyrz8wqd2c9m", "missing separator"),
        ("1qyrz8wqd2c9m", "empty prefix"),
        ("y1b0jsk6g", "invalid character 'b'"),
        ("lt1igcx5c0", "invalid character 'i'"),
        ("in1muywd", "checksum too short"),
        ("mm1crxm3i", "invalid character 'i'"),
        ("au1s5cgom", "invalid character 'o'"),
        ("M1VUXWEZ", "bad checksum"),
        ("16plkw9", "empty prefix"),
        ("1p2gdwpf", "empty prefix"),
    ],
)
def test_bip350_invalid_vectors(vector: str, reason: str) -> None:
    with pytest.raises(AddressError, match=reason):
        bech32m_decode_words(vector)
    with pytest.raises(AddressError, match=reason):
        bech32m_decode(vector)


@pytest.mark.parametrize("vector", ["A12UEL5L", "a12uel5l"])
def test_bip173_bech32_vectors_are_rejected_as_bech32(vector: str) -> None:
    with pytest.raises(AddressError, match="bech32 checksum, expected bech32m"):
        bech32m_decode(vector)


# --- Real Chia data ------------------------------------------------------------------


def test_mainnet_address_is_valid() -> None:
    puzzle_hash = decode_address(MAINNET, "xch")
    assert len(puzzle_hash) == 32
    assert bech32m_encode("xch", puzzle_hash) == MAINNET
    assert decode_address(MAINNET.upper(), "xch") == puzzle_hash


def test_burn_address_decodes_to_dead() -> None:
    assert decode_address(BURN, "xch") == BURN_PUZZLE_HASH
    assert bech32m_encode("xch", BURN_PUZZLE_HASH) == BURN


def test_token_id_round_trip() -> None:
    hrp, payload = bech32m_decode(TOKEN)
    assert hrp == "tkn"
    asset_id = payload.hex()
    assert asset_id.startswith("14b40962")
    assert asset_id.endswith("5cb495")
    assert len(asset_id) == 64
    assert token_id(asset_id) == TOKEN
    assert token_id(asset_id.upper()) == TOKEN


# --- Rejections ----------------------------------------------------------------------


def test_mainnet_address_rejected_as_testnet() -> None:
    with pytest.raises(AddressError, match="expected prefix 'txch', got 'xch'"):
        decode_address(MAINNET, "txch")


def test_testnet_address_rejected_as_mainnet() -> None:
    testnet = bech32m_encode("txch", BURN_PUZZLE_HASH)
    assert len(testnet) == 63
    assert decode_address(testnet, "txch") == BURN_PUZZLE_HASH
    with pytest.raises(AddressError, match="expected prefix 'xch', got 'txch'"):
        decode_address(testnet, "xch")


def test_one_character_typo_is_bad_checksum() -> None:
    typo = MAINNET[:10] + ("q" if MAINNET[10] != "q" else "p") + MAINNET[11:]
    with pytest.raises(AddressError, match="bad checksum"):
        decode_address(typo, "xch")


def test_every_single_substitution_is_caught() -> None:
    # bech32m guarantees detection of any single-character error at these lengths.
    for pos in range(len("xch1"), len(MAINNET)):
        for char in CHARSET:
            if char == MAINNET[pos]:
                continue
            with pytest.raises(AddressError, match="checksum"):
                decode_address(MAINNET[:pos] + char + MAINNET[pos + 1 :], "xch")


@pytest.mark.parametrize("size", [31, 33])
def test_wrong_payload_length(size: int) -> None:
    address = bech32m_encode("xch", bytes(range(size)))
    assert bech32m_decode(address) == ("xch", bytes(range(size)))
    with pytest.raises(AddressError, match=f"payload is {size} bytes, expected 32"):
        decode_address(address, "xch")


def test_mixed_case() -> None:
    with pytest.raises(AddressError, match="mixed case"):
        decode_address("XCH" + MAINNET[3:], "xch")


def test_empty_string() -> None:
    with pytest.raises(AddressError, match="empty string"):
        decode_address("", "xch")
    with pytest.raises(AddressError, match="empty string"):
        normalize_address("   ", "xch")


def test_non_ascii_homoglyph() -> None:
    cyrillic_es = "\u0441"  # looks like Latin 'c'
    address = MAINNET.replace("c", cyrillic_es, 1)
    with pytest.raises(AddressError, match=f"invalid character '{cyrillic_es}'"):
        decode_address(address, "xch")


def test_bech32_checksum_is_rejected() -> None:
    bech32_address = _encode_words("xch", _to_words(BURN_PUZZLE_HASH), _BECH32)
    assert _encode_words("xch", _to_words(BURN_PUZZLE_HASH)) == BURN  # helper sanity
    with pytest.raises(AddressError, match="bech32 checksum, expected bech32m"):
        decode_address(bech32_address, "xch")


def test_padding_errors() -> None:
    words = _to_words(BURN_PUZZLE_HASH)  # 52 words: 256 bits + 4 zero padding bits
    nonzero = [*words[:-1], words[-1] | 1]
    with pytest.raises(AddressError, match="non-zero padding"):
        decode_address(_encode_words("xch", nonzero), "xch")
    with pytest.raises(AddressError, match="excess padding"):
        decode_address(_encode_words("xch", [*words, 0, 0]), "xch")
    with pytest.raises(AddressError, match="excess padding"):
        bech32m_decode(_encode_words("a", [0]))


def test_surrounding_whitespace_only_stripped_by_normalize() -> None:
    with pytest.raises(AddressError, match="invalid character"):
        decode_address(f" {MAINNET}\n", "xch")
    assert normalize_address(f" \t{MAINNET.upper()}\n", "xch") == MAINNET


def test_normalize_rejects_invalid() -> None:
    with pytest.raises(AddressError, match="expected prefix 'txch'"):
        normalize_address(MAINNET, "txch")


def test_encode_lowercases_prefix_and_rejects_bad_prefix() -> None:
    assert bech32m_encode("XCH", BURN_PUZZLE_HASH) == BURN
    with pytest.raises(AddressError, match="empty prefix"):
        bech32m_encode("", b"")
    with pytest.raises(AddressError, match="invalid character ' '"):
        bech32m_encode("x h", b"")


# --- Asset ids -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ab" * 32, True),
        ("AB" * 32, True),
        ("0" * 64, True),
        ("ab" * 31, False),
        ("ab" * 33, False),
        ("0x" + "ab" * 32, False),
        ("ab" * 32 + "\n", False),
        ("g" + "a" * 63, False),
        ("\uff10" * 64, False),  # fullwidth digit zero
        ("", False),
    ],
)
def test_is_asset_id(text: str, expected: bool) -> None:
    assert is_asset_id(text) is expected


@pytest.mark.parametrize("bad", ["", "ab" * 31, "0x" + "ab" * 31, "zz" * 32])
def test_token_id_rejects_bad_asset_id(bad: str) -> None:
    with pytest.raises(AddressError, match="asset id must be 64 hex characters"):
        token_id(bad)


# --- Properties ----------------------------------------------------------------------


@given(payload=st.binary(min_size=32, max_size=32), prefix=st.sampled_from(["xch", "txch"]))
def test_round_trip(payload: bytes, prefix: str) -> None:
    address = bech32m_encode(prefix, payload)
    assert len(address) == len(prefix) + 59
    assert decode_address(address, prefix) == payload
    assert decode_address(address.upper(), prefix) == payload
    assert normalize_address(address.upper(), prefix) == address


@given(
    hrp=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1), payload=st.binary()
)
def test_generic_round_trip(hrp: str, payload: bytes) -> None:
    assert bech32m_decode(bech32m_encode(hrp, payload)) == (hrp.lower(), payload)


_NEAR_MISS = st.text(alphabet=CHARSET + CHARSET.upper() + "1bio \u0441")


def _failure_reason(call: Callable[[], object]) -> str | None:
    try:
        call()
    except AddressError as exc:
        return str(exc)
    return None


@given(text=st.one_of(st.text(), _NEAR_MISS))
def test_decoding_arbitrary_text_only_raises_address_error(text: str) -> None:
    # Anything other than AddressError escapes _failure_reason and fails the test.
    for call in (
        lambda: bech32m_decode(text),
        lambda: decode_address(text, "xch"),
        lambda: normalize_address(text, "txch"),
        lambda: token_id(text),
    ):
        reason = _failure_reason(call)
        assert reason is None or (reason and "\n" not in reason)
