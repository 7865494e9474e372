"""QR images: a full QR symbol (never Micro QR) that a scanner reads back, as a valid PNG."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
import zxingcpp
from PIL import Image

from bot.qr import qr_matrix, qr_png

PAYLOADS = ["0000123456", "RM7K3Q9XW2", "V7K3Q9XW", "GV-20261125-ABCDEFGH", "会员 7020"]


def _decode_png(png: bytes) -> tuple[int, int, list[list[bool]]]:
    """Width, height and dark pixels of a 1-bit greyscale PNG, checking every chunk's CRC."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    kinds = []
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        kinds.append(kind)
        header = data if kind == b"IHDR" else header
        idat += data if kind == b"IDAT" else b""
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour, interlace) == (1, 0, 0)
    raw, stride = zlib.decompress(idat), (width + 7) // 8 + 1
    rows = []
    for y in range(height):
        line = raw[y * stride : (y + 1) * stride]
        assert line[0] == 0  # no filter
        rows.append([not line[1 + (x >> 3)] & (0x80 >> (x & 7)) for x in range(width)])
    return width, height, rows


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_scanner_reads_the_code_back_as_a_full_qr_symbol(payload: str) -> None:
    png = qr_png(payload)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size[0] == image.size[1] >= 150
        found = zxingcpp.read_barcode(image)
    assert found is not None and found.valid
    assert found.text == payload
    assert found.format == zxingcpp.BarcodeFormat.QRCode  # not Micro QR
    assert found.ec_level == "M"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_image_is_the_symbol_with_a_quiet_zone(payload: str) -> None:
    matrix = qr_matrix(payload)
    size = len(matrix)
    assert size >= 21 and (size - 21) % 4 == 0  # a QR version, 21x21 and up
    width, height, pixels = _decode_png(qr_png(payload, scale=8, border=4))
    assert width == height == (size + 8) * 8
    for y in range(height):
        for x in range(width):
            my, mx = y // 8 - 4, x // 8 - 4
            inside = 0 <= my < size and 0 <= mx < size
            assert pixels[y][x] == (inside and matrix[my][mx]), (x, y)
