"""QR codes as PNG bytes (member cards, vouchers): encoded by zxing-cpp, drawn here.

Always a full QR symbol at error correction level M, never a Micro QR (which most phone
cameras and many till scanners cannot read). zxing-cpp encodes in C++ (0.05 ms, where the
pure-Python segno took over 1 ms for its mask selection: a voucher per redemption made it
the costliest step of redeeming); the PNG is a 1-bit greyscale image written in one zlib
call.
"""

from __future__ import annotations

import struct
import zlib

import zxingcpp

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DARK_BELOW = 128  # zxing-cpp draws modules black (0) on white (255)


def qr_matrix(payload: str) -> tuple[tuple[bool, ...], ...]:
    """The dark (True) and light modules of `payload` as a QR symbol, no quiet zone."""
    symbol = zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    image = symbol.to_image(scale=1, add_quiet_zones=False)  # greyscale, a byte a module
    height, width = image.shape[0], image.shape[1]
    # The image exposes the buffer protocol; zxing-cpp's type stub does not say so.
    pixels = memoryview(image).tobytes()  # type: ignore[arg-type]
    return tuple(
        tuple(pixel < _DARK_BELOW for pixel in pixels[y * width : (y + 1) * width])
        for y in range(height)
    )


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
