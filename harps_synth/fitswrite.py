"""Write FITS bytes directly: header cards, padding, DATASUM and CHECKSUM.

astropy needs about 20 ms to build a 3000-card header; the archive
generator formats cards itself (constant blocks are formatted once and
cached as bytes) and computes the FITS checksums with numpy.  The tests
check every file type against astropy: the files open, the checksums
verify and the values read back are the values written.

Checksum algorithm: FITS Checksum Convention (Seaman, Pence & Rots 2012),
a 32-bit ones' complement sum of the HDU as big-endian words, with the
ASCII encoding of its complement in ``CHECKSUM`` so that the whole HDU
sums to negative zero.
"""

from __future__ import annotations

import functools

import numpy as np

BLOCK = 2880
CARD = 80
_EXCLUDE = frozenset(range(0x3A, 0x41)) | frozenset(range(0x5B, 0x61))
CHECKSUM_PLACEHOLDER = "0000000000000000"


class Num(str):
    """A number already formatted as FITS text (written without quotes)."""


def fmt_float(value: float, digits: int = 15) -> str:
    """DRS-style float text: ``%.15G`` with a decimal point always present."""
    text = f"{value:.{digits}G}"
    if "." not in text and "E" not in text and "N" not in text:
        text += "."
    return text


def _value_text(value: object) -> tuple[str, bool]:
    """Text of a value and whether it is a string (left-aligned, quoted)."""
    if isinstance(value, Num):
        return str(value), False
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return ("T" if value else "F"), False
    if isinstance(value, (int, np.integer)):
        return str(int(value)), False
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise ValueError(f"FITS header values must be finite, got {value}")
        return fmt_float(float(value)), False
    if isinstance(value, str):
        if not value.isascii():
            raise ValueError(f"FITS header strings must be ASCII: {value!r}")
        quoted = "'" + value.replace("'", "''").ljust(8) + "'"
        return quoted, True
    raise TypeError(f"unsupported FITS header value type {type(value).__name__}")


def _finish(text: str, comment: str) -> str:
    if comment:
        text = f"{text} / {comment}"
    if len(text) > CARD:
        text = text[:CARD]
    return text.ljust(CARD)


@functools.lru_cache(maxsize=16384, typed=True)
def card(key: str, value: object = None, comment: str = "") -> str:
    """One fixed-format card (keyword of at most 8 characters).

    Parameters
    ----------
    key : str
        Keyword; ``COMMENT``/``HISTORY`` take the text in ``comment``.
    value : bool, int, float, str or Num
        Numbers and logicals are right-aligned to column 30, strings start
        in column 11 and are blank-padded to column 30 (FITS fixed format,
        as astropy re-renders the CHECKSUM card when it verifies it).
    comment : str
        Truncated to fit 80 columns; the value never is.

    Returns
    -------
    str
        Exactly 80 ASCII characters.  Cached (typed): a header repeats most
        cards from file to file.
    """
    if key in ("COMMENT", "HISTORY", ""):
        return (key.ljust(8) + comment)[:CARD].ljust(CARD)
    if len(key) > 8:
        raise ValueError(f"keyword {key!r} needs a HIERARCH card")
    text, is_str = _value_text(value)
    head = f"{key:<8}= " + (text.ljust(20) if is_str else text.rjust(20))
    if len(head) > CARD:
        raise ValueError(f"value of {key} does not fit in one card: {text!r}")
    return _finish(head, comment)


@functools.lru_cache(maxsize=16384, typed=True)
def hcard(key: str, value: object, comment: str = "", align: bool = True) -> str:
    """One ``HIERARCH`` card, as ESO writes them.

    Parameters
    ----------
    key : str
        Keyword without ``HIERARCH`` (``"ESO TEL AIRM START"``).
    value, comment
        As in :func:`card`.
    align : bool
        True: the ICS/TCS layout (``=`` in column 30, comment slash in
        column 45 where it fits); False: the compact DRS layout
        (``HIERARCH ESO DRS BERV = -8.68 / ...``).

    Returns
    -------
    str
        Exactly 80 ASCII characters.
    """
    text, is_str = _value_text(value)
    if align:
        prefix = f"HIERARCH {key:<20}="
        width = max(43 - len(prefix), len(text) + 1)
        head = prefix + (" " + text.ljust(width - 1) if is_str else text.rjust(width))
    else:
        head = f"HIERARCH {key} = {text}"
    if len(head) > CARD:
        raise ValueError(f"HIERARCH card {key} = {text} is longer than 80 characters")
    return _finish(head, comment)


def header_bytes(cards: list[str | bytes]) -> bytes:
    """Join cards (80-char strings or pre-joined byte blocks), add END, pad to 2880.

    Parameters
    ----------
    cards : list of str or bytes
        Strings are single cards; bytes are blocks of whole cards.

    Returns
    -------
    bytes
        Length a multiple of 2880, blank-padded.
    """
    parts = [c if isinstance(c, bytes) else c.encode("ascii") for c in cards]
    parts.append(b"END".ljust(CARD))
    raw = b"".join(parts)
    if len(raw) % CARD:
        raise ValueError("header blocks must hold whole 80-character cards")
    return raw + b" " * (-len(raw) % BLOCK)


def pad_data(data: bytes) -> bytes:
    """Zero-pad a data unit to a multiple of 2880 bytes."""
    return data + b"\0" * (-len(data) % BLOCK)


def ones_sum32(buf: bytes) -> int:
    """32-bit ones' complement sum of big-endian words (length a multiple of 4)."""
    total = int(np.frombuffer(buf, dtype=">u4").sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def encode_checksum(value: int) -> str:
    """ASCII encoding of the complement of a 32-bit sum (FITS CHECKSUM value)."""
    value = ~value & 0xFFFFFFFF
    asc = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = byte // 4 + 0x30, byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                while ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            asc[4 * j + i] = ch[j]
    return bytes(asc[15:] + asc[:15]).decode("ascii")


def hdu_bytes(cards: list[str | bytes], data: bytes, checksum: bool = True,
              datasum_comment: str = "data unit checksum",
              checksum_comment: str = "HDU checksum") -> bytes:
    """Header and data of one HDU, with DATASUM and CHECKSUM filled in.

    Parameters
    ----------
    cards : list of str or bytes
        Header cards without END; where ``checksum`` is True they must not
        hold CHECKSUM/DATASUM (they are appended here).
    data : bytes
        Unpadded data unit (may be empty).
    checksum : bool
        False writes no checksum cards at all.
    datasum_comment, checksum_comment : str
        Comments of the two cards.

    Returns
    -------
    bytes
        The padded HDU.
    """
    body = pad_data(data)
    if not checksum:
        return header_bytes(cards) + body
    datasum = ones_sum32(body) if body else 0
    tail = [card("CHECKSUM", CHECKSUM_PLACEHOLDER, checksum_comment),
            card("DATASUM", str(datasum), datasum_comment)]
    head = header_bytes(list(cards) + tail)
    total = ones_sum32(head) + datasum
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    where = head.rfind(b"CHECKSUM= '" + CHECKSUM_PLACEHOLDER.encode())
    code = encode_checksum(total).encode("ascii")
    head = head[:where + 11] + code + head[where + 27:]
    return head + body
