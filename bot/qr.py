"""QR codes as PNG bytes (member cards, vouchers): encoded by segno, drawn here.

Always a full QR symbol, never a Micro QR: segno picks Micro QR for short payloads when
allowed, and most phone cameras and many till scanners cannot read those. The PNG is a
1-bit greyscale image written directly (one zlib call), a tenth of the time of segno's
pure-Python writer, which mattered at one voucher per redemption.
"""

from __future__ import annotations

import struct
import zlib

import segno

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def qr_matrix(payload: str) -> tuple[tuple[bool, ...], ...]:
    """The dark (True) and light modules of `payload` as a full QR symbol, no quiet zone."""
    symbol = segno.make(payload, error="m", micro=False)
    return tuple(tuple(bool(module) for module in row) for row in symbol.matrix)


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def qr_png(payload: str, *, scale: int = 8, border: int = 4) -> bytes:
    """A PNG of `payload` as a QR code, large enough for a till scanner to read off a phone."""
    matrix = qr_matrix(payload)
    side = (len(matrix) + 2 * border) * scale
    light_row = (False,) * len(matrix)
    quiet = (False,) * border
    width = (side + 7) // 8
    raw = bytearray()
    for row in [light_row] * border + list(matrix) + [light_row] * border:
        # 1-bit greyscale, most significant bit first: a 1 is white, a dark module 0s.
        bits = "".join(("0" if dark else "1") * scale for dark in quiet + row + quiet)
        packed = int(bits.ljust(width * 8, "0"), 2).to_bytes(width, "big")
        raw += (b"\x00" + packed) * scale  # filter type 0 (none) on every scanline
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw)))
        + _chunk(b"IEND", b"")
    )
