"""Chia address and CAT token id handling (bech32m, BIP-350).

Chia encodes a 32-byte puzzle hash as bech32m *without* the SegWit witness-version
byte, so off-the-shelf SegWit address libraries reject or mis-decode Chia addresses.
This module carries its own small implementation of the BIP-350 reference algorithm
so validation does not depend on a third-party package. It is only used to check and
display public identifiers; nothing here is security critical beyond catching typos.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "AddressError",
    "bech32m_decode",
    "bech32m_decode_words",
    "bech32m_encode",
    "decode_address",
    "is_asset_id",
    "normalize_address",
    "token_id",
]

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32M_CONST = 0x2BC830A3
# Plain bech32 (BIP-173) checksums end at 1; recognising them gives a clearer error for
# strings produced by bech32-only tools instead of a generic "bad checksum".
_BECH32_CONST = 1
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_CHECKSUM_LEN = 6
_CHARSET_INDEX = {c: i for i, c in enumerate(CHARSET)}
_PUZZLE_HASH_LEN = 32
_ASSET_ID_RE = re.compile(r"[0-9a-fA-F]{64}")


class AddressError(ValueError):
    """A string is not an acceptable address or id.

    Subclasses ValueError so callers parsing user input can catch one familiar type; the
    message is a short one-line reason meant to be shown to the user as-is.
    """


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _create_checksum(hrp: str, words: list[int]) -> list[int]:
    polymod = _polymod(_hrp_expand(hrp) + words + [0] * _CHECKSUM_LEN) ^ BECH32M_CONST
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(_CHECKSUM_LEN)]


def _convertbits(data: Iterable[int], frombits: int, tobits: int, *, pad: bool) -> list[int]:
    """Regroup bits as in the BIP-173 reference.

    Decoding (pad=False) must refuse non-zero or over-long padding: otherwise several
    distinct strings would decode to the same payload and a corrupted string could
    silently pass as a valid one.
    """
    acc = 0
    bits = 0
    ret: list[int] = []
    maxv = (1 << tobits) - 1
    max_acc = (1 << (frombits + tobits - 1)) - 1
    for value in data:
        if value < 0 or value >> frombits:
            raise AddressError(f"value {value} does not fit in {frombits} bits")
        acc = ((acc << frombits) | value) & max_acc
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad:
        if bits:
            ret.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits:
        raise AddressError("excess padding")
    elif (acc << (tobits - bits)) & maxv:
        raise AddressError("non-zero padding")
    return ret


def bech32m_decode_words(text: str) -> tuple[str, list[int]]:
    """Check a bech32m string and return its prefix and raw 5-bit data words.

    Exposed separately from bech32m_decode because valid bech32m strings need not carry
    a whole number of bytes (several BIP-350 test vectors don't). No overall length cap
    is applied: BIP-173's 90-character limit is a SegWit rule, and callers with a fixed
    format should check the payload length instead.
    """
    if not text:
        raise AddressError("empty string")
    for char in text:
        if not 33 <= ord(char) <= 126:
            raise AddressError(f"invalid character {char!r}")
    if text.lower() != text and text.upper() != text:
        raise AddressError("mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos == -1:
        raise AddressError("missing separator '1'")
    if pos == 0:
        raise AddressError("empty prefix")
    hrp, data_part = text[:pos], text[pos + 1 :]
    if len(data_part) < _CHECKSUM_LEN:
        raise AddressError("checksum too short")
    words: list[int] = []
    for char in data_part:
        index = _CHARSET_INDEX.get(char)
        if index is None:
            raise AddressError(f"invalid character {char!r}")
        words.append(index)
    check = _polymod(_hrp_expand(hrp) + words)
    if check == _BECH32_CONST:
        raise AddressError("bech32 checksum, expected bech32m")
    if check != BECH32M_CONST:
        raise AddressError("bad checksum")
    return hrp, words[:-_CHECKSUM_LEN]


def bech32m_decode(text: str) -> tuple[str, bytes]:
    """Decode a bech32m string to its (lowercase) prefix and 8-bit payload."""
    hrp, words = bech32m_decode_words(text)
    return hrp, bytes(_convertbits(words, 5, 8, pad=False))


def bech32m_encode(hrp: str, payload: bytes) -> str:
    """Encode payload as bech32m under hrp.

    The prefix is lowercased before the checksum is computed because decoders checksum
    the lowercase form; an uppercase prefix would otherwise yield an undecodable string.
    """
    if not hrp:
        raise AddressError("empty prefix")
    for char in hrp:
        if not 33 <= ord(char) <= 126:
            raise AddressError(f"invalid character {char!r}")
    hrp = hrp.lower()
    words = _convertbits(payload, 8, 5, pad=True)
    return hrp + "1" + "".join(CHARSET[w] for w in words + _create_checksum(hrp, words))


def decode_address(address: str, prefix: str) -> bytes:
    """Return the 32-byte puzzle hash of a Chia address on the expected network.

    The prefix is checked so a testnet ('txch') address is never accepted where a
    mainnet ('xch') one is meant, and vice versa. The payload length is checked because
    bech32m itself happily carries any length.
    """
    hrp, payload = bech32m_decode(address)
    if hrp != prefix:
        raise AddressError(f"expected prefix {prefix!r}, got {hrp!r}")
    if len(payload) != _PUZZLE_HASH_LEN:
        raise AddressError(f"payload is {len(payload)} bytes, expected {_PUZZLE_HASH_LEN}")
    return payload


def normalize_address(address: str, prefix: str) -> str:
    """Validate a user-entered address and return its canonical lowercase form.

    Pasted addresses often carry stray whitespace, and the uppercase form (valid, used
    in QR codes) must compare equal to the lowercase one when stored or deduplicated.
    """
    address = address.strip()
    decode_address(address, prefix)
    return address.lower()


def is_asset_id(text: str) -> bool:
    """Tell whether text looks like a CAT asset id (TAIL hash) rather than a name."""
    return _ASSET_ID_RE.fullmatch(text) is not None


def token_id(asset_id_hex: str) -> str:
    """Return the 'tkn1...' form of a CAT asset id, as shown by wallets and explorers."""
    if not is_asset_id(asset_id_hex):
        raise AddressError(f"asset id must be 64 hex characters, got {asset_id_hex!r}")
    return bech32m_encode("tkn", bytes.fromhex(asset_id_hex))
