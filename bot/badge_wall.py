"""The badge-wall picture, drawn with Pillow: earned badges in colour, locked ones in grey,
each set's progress as a bar and "3/4".

Names are drawn when the fonts at hand have every glyph (a CJK font for Chinese, see
`bot.wheel.find_cjk_font`); otherwise badges and sets are numbered and the text list sent with
the picture names them. Emoji are left to that text (few systems have a colour emoji font).
The layout with every badge locked is drawn once per set of labels; a wall only colours the
earned tiles over a copy of it, and finished pictures are cached by what they show.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from PIL import Image, ImageDraw, ImageFont

from bot.charts import _drawable, _fit
from bot.wheel import find_cjk_font, find_latin_font

WIDTH: Final = 720
MARGIN: Final = 24
TITLE_HEIGHT: Final = 56
COLUMNS: Final = 4
TILE_WIDTH: Final = (WIDTH - 2 * MARGIN) // COLUMNS
TILE_HEIGHT: Final = 168
DISC: Final = 104
SET_HEIGHT: Final = 44
SECTION_GAP: Final = 16
BACKGROUND: Final = (255, 252, 244)
TEXT: Final = (40, 40, 40)
MUTED: Final = (150, 150, 150)
LOCKED: Final = (214, 214, 214)
LOCKED_RING: Final = (186, 186, 186)
TRACK: Final = (232, 232, 232)
DONE: Final = (76, 160, 96)
COLOURS: Final = (
    (76, 160, 96), (102, 178, 232), (247, 160, 80), (181, 146, 230),
    (240, 128, 170), (94, 196, 182), (255, 196, 87), (130, 160, 240),
)  # fmt: skip
# Finished pictures kept (a few dozen distinct walls serve most members).
PICTURE_CACHE: Final = 256

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True, slots=True)
class WallPicture:
    """A rendered wall: the PNG, its size, whether it numbers instead of naming, its key."""

    png: bytes
    size: tuple[int, int]
    numbered: bool
    key: tuple[object, ...]


def _height(badges: int, sets: int) -> int:
    rows = max(1, -(-badges // COLUMNS))
    sets_part = SECTION_GAP + sets * SET_HEIGHT if sets else 0
    return MARGIN * 2 + TITLE_HEIGHT + rows * TILE_HEIGHT + sets_part


def _tile_origin(index: int) -> tuple[int, int]:
    row, column = divmod(index, COLUMNS)
    return MARGIN + column * TILE_WIDTH, MARGIN + TITLE_HEIGHT + row * TILE_HEIGHT


class WallPainter:
    """Draws badge walls: the all-locked layout cached per labels, finished walls per state."""

    def __init__(self, font: str = "") -> None:
        self.cjk_font = find_cjk_font(font)
        self.latin_font = find_latin_font()
        self._lock = threading.Lock()
        self._layouts: dict[tuple[object, ...], Image.Image] = {}
        self._fonts: dict[int, Font] = {}
        self._drawing = threading.Lock()
        self._pictures: OrderedDict[tuple[object, ...], WallPicture] = OrderedDict()

    def _font(self, size: int) -> Font:
        # Loaded once per size: a wall drawn for each new state must not reread font files.
        if (font := self._fonts.get(size)) is None:
            path = self.cjk_font or self.latin_font
            font = ImageFont.truetype(path, size) if path else ImageFont.load_default(size)
            self._fonts[size] = font
        return font

    def can_label(self, texts: Sequence[str]) -> bool:
        """True when every text can be drawn with the fonts at hand."""
        return all(_drawable(text, self.cjk_font is not None) for text in texts)

    def render(
        self,
        title: str,
        badges: Sequence[str],
        earned: Sequence[bool],
        sets: Sequence[tuple[str, int, int]],
    ) -> WallPicture:
        """The wall under `title`: `badges` (names) with which are `earned`, and each set as
        (name, held, total)."""
        numbered = not self.can_label([title, *badges, *(name for name, _, _ in sets)])
        key = ("badges", title, tuple(badges), tuple(earned), tuple(sets), numbered)
        with self._lock:
            if (found := self._pictures.get(key)) is not None:
                self._pictures.move_to_end(key)
                return found
        # One drawing at a time: the fonts and the cached layouts are shared between threads.
        with self._drawing:
            png, size = self._draw(title, badges, earned, sets, numbered)
        picture = WallPicture(png, size, numbered, key)
        with self._lock:
            self._pictures[key] = picture
            while len(self._pictures) > PICTURE_CACHE:
                self._pictures.popitem(last=False)
        return picture

    def _draw(
        self,
        title: str,
        badges: Sequence[str],
        earned: Sequence[bool],
        sets: Sequence[tuple[str, int, int]],
        numbered: bool,
    ) -> tuple[bytes, tuple[int, int]]:
        """The wall's PNG and size: the cached layout, with the earned badges coloured."""
        image = self._layout(title, tuple(badges), tuple(s[0] for s in sets), numbered).copy()
        draw = ImageDraw.Draw(image)
        number_font = self._font(40)
        for index, done in enumerate(earned):
            if done:
                self._disc(draw, index, COLOURS[index % len(COLOURS)], number_font, TEXT)
        bar_font = self._font(18)
        count = f"{sum(1 for done in earned if done)}/{len(badges)}"
        draw.text((WIDTH - MARGIN, MARGIN + 4), count, font=self._font(28), fill=TEXT, anchor="ra")
        top = MARGIN + TITLE_HEIGHT + max(1, -(-len(badges) // COLUMNS)) * TILE_HEIGHT
        top += SECTION_GAP
        left, right = MARGIN + 260, WIDTH - MARGIN - 90
        for index, (_name, held, total) in enumerate(sets):
            y = top + index * SET_HEIGHT
            if total and held:
                filled = left + round((right - left) * min(held, total) / total)
                colour = DONE if held >= total else COLOURS[index % len(COLOURS)]
                draw.rectangle((left, y + 6, filled, y + 28), fill=colour)
            draw.text((right + 12, y + 5), f"{held}/{total}", font=bar_font, fill=TEXT)
        out = io.BytesIO()
        # A quick compression: a wall is drawn per member state, and flat colours pack well.
        image.save(out, format="PNG", compress_level=6)
        return out.getvalue(), image.size

    def _disc(
        self,
        draw: ImageDraw.ImageDraw,
        index: int,
        fill: tuple[int, int, int],
        font: Font,
        text_colour: tuple[int, int, int],
    ) -> None:
        x, y = _tile_origin(index)
        cx = x + TILE_WIDTH // 2
        box = (cx - DISC // 2, y + 8, cx + DISC // 2, y + 8 + DISC)
        draw.ellipse(box, fill=fill, outline=LOCKED_RING if fill == LOCKED else TEXT, width=3)
        draw.text(
            (cx, y + 8 + DISC // 2),
            str(index + 1),
            font=font,
            fill=text_colour,
            anchor="mm",
        )

    def _layout(
        self, title: str, badges: tuple[str, ...], sets: tuple[str, ...], numbered: bool
    ) -> Image.Image:
        """The wall with every badge locked: the part that is the same for every member."""
        key = (title, badges, sets, numbered)
        with self._lock:
            if (found := self._layouts.get(key)) is not None:
                return found
        image = Image.new("RGB", (WIDTH, _height(len(badges), len(sets))), BACKGROUND)
        draw = ImageDraw.Draw(image)
        title_font, label_font, number_font = self._font(28), self._font(17), self._font(40)
        if self.can_label([title]):
            draw.text((MARGIN, MARGIN), title, font=title_font, fill=TEXT)
        for index, name in enumerate(badges):
            self._disc(draw, index, LOCKED, number_font, MUTED)
            x, y = _tile_origin(index)
            label = f"#{index + 1}" if numbered else _fit(name, label_font, TILE_WIDTH - 12)
            draw.text(
                (x + TILE_WIDTH // 2, y + DISC + 30), label, font=label_font, fill=TEXT, anchor="mm"
            )
        top = MARGIN + TITLE_HEIGHT + max(1, -(-len(badges) // COLUMNS)) * TILE_HEIGHT
        top += SECTION_GAP
        left, right = MARGIN + 260, WIDTH - MARGIN - 90
        for index, name in enumerate(sets):
            y = top + index * SET_HEIGHT
            label = f"{index + 1}." if numbered else _fit(name, label_font, 250)
            draw.text((MARGIN, y + 6), label, font=label_font, fill=TEXT)
            draw.rectangle((left, y + 6, right, y + 28), fill=TRACK)
        with self._lock:
            self._layouts[key] = image
        return image


@lru_cache(maxsize=4)
def wall_painter(font: str = "") -> WallPainter:
    """The shared painter for a configured font (its caches live as long as the process)."""
    return WallPainter(font)
