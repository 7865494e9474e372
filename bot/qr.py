"""QR codes as PNG bytes (member cards, vouchers), drawn with segno (pure Python)."""

from __future__ import annotations

import io

import segno


def qr_png(payload: str, *, scale: int = 8) -> bytes:
    """A PNG of `payload` as a QR code, large enough for a till scanner to read off a phone."""
    buffer = io.BytesIO()
    segno.make(payload, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()
