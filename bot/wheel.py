"""The wheel picture, drawn with Pillow: painters, fonts and the cache of finished pictures.

The wheel is drawn to scale: a prize's slice is exactly its probability of 360°, so the
picture never suggests better odds than the table discloses. The rules (tables, odds, the draw)
live in `bot.programme.game_rules`.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageFont

SIZE: Final = 480
RADIUS: Final = 208
CENTER: Final = (SIZE // 2, SIZE // 2 + 12)
SUPERSAMPLE: Final = 2
BACKGROUND: Final = (255, 248, 231)
RIM: Final = (196, 60, 48)
SEGMENT_COLOURS: Final = (
    (255, 196, 87), (126, 200, 130), (102, 178, 232), (247, 141, 116), (181, 146, 230),
    (255, 224, 130), (94, 196, 182), (240, 128, 170), (160, 210, 90), (255, 170, 80),
    (130, 160, 240), (220, 200, 150),
)  # fmt: skip
TEXT_COLOUR: Final = (51, 40, 30)

# Fonts with Chinese glyphs where distributions and systems usually put them.
CJK_FONT_CANDIDATES: Final = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)
CJK_FONT_DIRS: Final = ("/usr/share/fonts", "/usr/local/share/fonts")
CJK_FONT_NAMES: Final = ("CJK", "wqy", "SourceHan", "NotoSansSC", "DroidSansFallback")
LATIN_FONT_CANDIDATES: Final = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/System/Library/Fonts/Helvetica.ttc",
    "C:/Windows/Fonts/arialbd.ttf",
)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def slice_colour(index: int, count: int) -> tuple[int, int, int]:
    """The fill of slice `index` of `count`: neighbours differ, the last and first too."""
    colour = SEGMENT_COLOURS[index % len(SEGMENT_COLOURS)]
    if count > 1 and index == count - 1 and colour == SEGMENT_COLOURS[0]:
        colour = SEGMENT_COLOURS[1]
    return colour


def _loads(path: str) -> bool:
    try:
        ImageFont.truetype(path, 12)
    except OSError:
        return False
    return True


def find_cjk_font(configured: str = "") -> str | None:
    """A font file that can draw Chinese: the configured one, else one found on the system."""
    if configured and _loads(configured):
        return configured
    for candidate in CJK_FONT_CANDIDATES:
        if Path(candidate).is_file() and _loads(candidate):
            return candidate
    for folder in CJK_FONT_DIRS:
        root = Path(folder)
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            font_file = path.suffix.lower() in (".ttf", ".ttc", ".otf")
            if (
                font_file
                and any(name.lower() in path.name.lower() for name in CJK_FONT_NAMES)
                and _loads(str(path))
            ):
                return str(path)
    return None


def find_latin_font() -> str | None:
    """A bold sans font file for numbers and Latin labels, or None (Pillow's own then)."""
    return next((c for c in LATIN_FONT_CANDIDATES if Path(c).is_file() and _loads(c)), None)


def _is_latin(ch: str) -> bool:
    code = ord(ch)
    return code < 0x250 or 0x2000 <= code <= 0x206F or ch == "×"


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x2E80 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0xFE30 <= code <= 0xFE4F
        or 0xFF00 <= code <= 0xFFEF
    )


@dataclass(frozen=True, slots=True)
class WheelPicture:
    """A rendered spin: the PNG, and whether slices carry numbers instead of labels."""

    png: bytes
    numbered: bool
    # What was drawn (labels, weights, winner, stop, badge): the same key, the same picture.
    key: tuple[object, ...] = ()


# At most this many finished pictures are kept (about 80 KB each).
PICTURE_CACHE = 128
# Where in its slice the pointer may rest: a few stops, so pictures repeat and are cached.
STOPS_PER_SLICE = 8


def _picture_key(
    labels: Sequence[str], weights: Sequence[int], winner: int, position: float, badge: str
) -> tuple[object, ...]:
    return (tuple(labels), tuple(weights), winner, round(position, 3), badge)


class WheelPainter:
    """Draws the wheel: the static wheel is cached per label set, a spin only rotates it."""

    def __init__(self, font: str = "") -> None:
        self.cjk_font = find_cjk_font(font)
        self.latin_font = find_latin_font()
        self._lock = threading.Lock()
        self._wheels: dict[tuple[object, ...], Image.Image] = {}
        self._overlays: dict[str, Image.Image] = {}
        self._background = self._draw_background()
        # Finished pictures: a festival's thousands of spins land on a few dozen distinct
        # stops, so rotating and PNG-encoding each one again would be wasted CPU.
        self._pictures: OrderedDict[tuple[object, ...], WheelPicture] = OrderedDict()

    def can_label(self, labels: Sequence[str]) -> bool:
        """True when every label can be drawn with the fonts at hand (else: numbers)."""
        has_cjk = self.cjk_font is not None
        return all(_is_latin(ch) or (has_cjk and _is_cjk(ch)) for label in labels for ch in label)

    def _font(self, size: int, *, cjk: bool) -> Font:
        path = self.cjk_font if cjk else self.latin_font
        if path is None:
            path = self.cjk_font or self.latin_font
        if path is not None:
            return ImageFont.truetype(path, size)
        # Pillow's own font: scalable with FreeType, a small bitmap without it.
        return ImageFont.load_default(size)

    def render(
        self,
        labels: Sequence[str],
        weights: Sequence[int],
        winner: int,
        position: float,
        badge: str = "",
    ) -> WheelPicture:
        """The wheel stopped with the pointer on slice `winner`, `position` (0..1) of the way
        through it; `badge` (e.g. "×2") is written on the hub."""
        if (cached := self.cached(labels, weights, winner, position, badge)) is not None:
            return cached
        key = _picture_key(labels, weights, winner, position, badge)
        picture = self._render(labels, weights, winner, position, badge, key)
        with self._lock:
            self._pictures[key] = picture
            while len(self._pictures) > PICTURE_CACHE:
                self._pictures.popitem(last=False)
        return picture

    def cached(
        self,
        labels: Sequence[str],
        weights: Sequence[int],
        winner: int,
        position: float,
        badge: str = "",
    ) -> WheelPicture | None:
        """The picture `render` would return, if it is drawn already (no drawing here, so a
        caller on the event loop need not hop to a thread for it)."""
        if not 0 <= winner < len(weights) or len(labels) != len(weights):
            raise ValueError("the winner must be one of the slices")
        key = _picture_key(labels, weights, winner, position, badge)
        with self._lock:
            if (cached := self._pictures.get(key)) is not None:
                self._pictures.move_to_end(key)
            return cached

    def _render(
        self,
        labels: Sequence[str],
        weights: Sequence[int],
        winner: int,
        position: float,
        badge: str,
        key: tuple[object, ...],
    ) -> WheelPicture:
        numbered = not self.can_label(labels)
        texts = tuple(str(i + 1) for i in range(len(labels))) if numbered else tuple(labels)
        wheel = self._wheel(texts, tuple(weights), numbered)
        total = sum(weights)
        start = sum(weights[:winner]) / total * 360
        extent = weights[winner] / total * 360
        stop = start + min(max(position, 0.0), 1.0) * extent
        # Image.rotate turns counter-clockwise: the stop point comes up under the pointer.
        turned = wheel.rotate(stop, resample=Image.Resampling.BICUBIC)
        frame = self._background.copy()
        frame.paste(turned, (CENTER[0] - RADIUS, CENTER[1] - RADIUS), turned)
        overlay = self._overlay(badge)
        frame.paste(overlay, (0, 0), overlay)
        out = io.BytesIO()
        frame.save(out, format="PNG", compress_level=3)
        return WheelPicture(out.getvalue(), numbered, key)

    # -- the cached parts --

    def _wheel(
        self, texts: tuple[str, ...], weights: tuple[int, ...], numbered: bool
    ) -> Image.Image:
        key = (texts, weights, numbered)
        with self._lock:
            cached = self._wheels.get(key)
            if cached is None:
                cached = self._draw_wheel(texts, weights, numbered)
                if len(self._wheels) > 32:  # a few languages × campaigns; never unbounded
                    self._wheels.clear()
                self._wheels[key] = cached
            return cached

    def _overlay(self, badge: str) -> Image.Image:
        with self._lock:
            cached = self._overlays.get(badge)
            if cached is None:
                cached = self._draw_overlay(badge)
                self._overlays[badge] = cached
            return cached

    def _draw_background(self) -> Image.Image:
        scale = SUPERSAMPLE
        image = Image.new("RGB", (SIZE * scale, SIZE * scale), BACKGROUND)
        draw = ImageDraw.Draw(image)
        cx, cy, r = CENTER[0] * scale, CENTER[1] * scale, (RADIUS + 10) * scale
        dx, dy = 6 * scale, 8 * scale  # a soft shadow down and to the right
        draw.ellipse((cx - r + dx, cy - r + dy, cx + r + dx, cy + r + dy), fill=(230, 214, 190))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=RIM)
        return image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)

    def _draw_wheel(
        self, texts: tuple[str, ...], weights: tuple[int, ...], numbered: bool
    ) -> Image.Image:
        scale = SUPERSAMPLE
        r = RADIUS * scale
        image = Image.new("RGBA", (2 * r, 2 * r), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        total = sum(weights)
        start = 0.0  # degrees clockwise from 12 o'clock
        for i, weight in enumerate(weights):
            extent = weight / total * 360
            colour = slice_colour(i, len(weights))
            draw.pieslice(
                (0, 0, 2 * r - 1, 2 * r - 1),
                start - 90,
                start - 90 + extent,
                fill=colour,
                outline=(255, 255, 255),
                width=2 * scale,
            )
            self._draw_text(image, texts[i], start + extent / 2, extent, numbered)
            start += extent
        return image.resize((2 * RADIUS, 2 * RADIUS), Image.Resampling.LANCZOS)

    def _draw_text(
        self, image: Image.Image, text: str, middle: float, extent: float, numbered: bool
    ) -> None:
        """Write a slice's text along its radius, if it fits."""
        scale = SUPERSAMPLE
        r = RADIUS * scale
        at = 0.63 * r
        longest = 0.52 * r
        # How tall a line the slice can hold at that radius.
        room = 2 * at * math.sin(math.radians(min(extent, 180) / 2)) * 0.8
        cjk = any(_is_cjk(ch) for ch in text)
        for size in (26, 22, 18, 15, 12):
            font = self._font(size * scale, cjk=cjk)
            left, top, right, bottom = font.getbbox(text)
            if (right - left) <= longest and (bottom - top) <= room:
                break
        else:
            return  # too narrow a slice: the caption names the prize
        box = (math.ceil(right - left) + 4, math.ceil(bottom - top) + 4)
        label = Image.new("RGBA", box, (0, 0, 0, 0))
        ImageDraw.Draw(label).text((2 - left, 2 - top), text, font=font, fill=TEXT_COLOUR)
        # Every label reads from the hub outwards, as on a painted wheel.
        turned = label.rotate(90 - middle, expand=True, resample=Image.Resampling.BICUBIC)
        x = r + at * math.sin(math.radians(middle)) - turned.width / 2
        y = r - at * math.cos(math.radians(middle)) - turned.height / 2
        image.alpha_composite(turned, (round(x), round(y)))

    def _draw_overlay(self, badge: str) -> Image.Image:
        """The pointer at 12 o'clock and the hub (with the campaign badge), which never turn."""
        scale = SUPERSAMPLE
        image = Image.new("RGBA", (SIZE * scale, SIZE * scale), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        cx, cy = CENTER[0] * scale, CENTER[1] * scale
        top = (CENTER[1] - RADIUS) * scale
        tip, half, height = top + 34 * scale, 20 * scale, 52 * scale
        pointer = [(cx - half, tip - height), (cx + half, tip - height), (cx, tip)]
        draw.polygon(pointer, fill=(214, 40, 40), outline=(255, 255, 255), width=3 * scale)
        hub = 34 * scale
        hub_box = (cx - hub, cy - hub, cx + hub, cy + hub)
        draw.ellipse(hub_box, fill=RIM, outline=(255, 255, 255), width=4 * scale)
        if badge:
            font = self._font(24 * scale, cjk=False)
            left, top_, right, bottom = font.getbbox(badge)
            at = (cx - (left + right) / 2, cy - (top_ + bottom) / 2)
            draw.text(at, badge, font=font, fill=(255, 255, 255))
        return image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


@lru_cache(maxsize=4)
def painter_for(font: str = "") -> WheelPainter:
    """The shared painter for a configured font (its caches live as long as the process)."""
    return WheelPainter(font)
