"""Bar charts of survey results for operators, and a member's green months, drawn with Pillow.

Labels are drawn when the fonts at hand have every glyph (a CJK font for Chinese, see
`bot.wheel.find_cjk_font`); otherwise questions and bars are numbered ("Q1", "1", "2", …) and
the text report sent with the picture names them, rather than drawing boxes for missing glyphs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from PIL import Image, ImageDraw, ImageFont

from bot.wheel import find_cjk_font, find_latin_font

WIDTH: Final = 900
MARGIN: Final = 24
TITLE_HEIGHT: Final = 56
PANEL_TITLE_HEIGHT: Final = 40
BAR_HEIGHT: Final = 26
BAR_GAP: Final = 10
PANEL_GAP: Final = 22
LABEL_WIDTH: Final = 260
NUMBER_LABEL_WIDTH: Final = 48
VALUE_WIDTH: Final = 120
BACKGROUND: Final = (255, 255, 255)
TEXT: Final = (40, 40, 40)
MUTED: Final = (120, 120, 120)
TRACK: Final = (238, 242, 238)
BAR_COLOURS: Final = ((76, 160, 96), (102, 178, 232), (247, 160, 80), (181, 146, 230))
# Pillow caps an image's pixels; a survey has at most 20 questions of 10 options.
MAX_HEIGHT: Final = 12_000

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: what it counts and how many."""

    label: str
    count: int


@dataclass(frozen=True, slots=True)
class Panel:
    """One question's bars, with a note such as the average rating."""

    title: str
    bars: tuple[Bar, ...]
    note: str = ""


@dataclass(frozen=True, slots=True)
class ChartPicture:
    """A rendered chart, and whether it numbers questions and bars instead of naming them."""

    png: bytes
    numbered: bool


def _drawable(text: str, has_cjk: bool) -> bool:
    for ch in text:
        code = ord(ch)
        latin = code < 0x250 or 0x2000 <= code <= 0x206F
        cjk = 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF
        if not (latin or (has_cjk and cjk)):
            return False
    return True


# Column charts (a member's months): a small picture, one column per month.
COLUMNS_WIDTH: Final = 640
COLUMNS_HEIGHT: Final = 400
COLUMN_AREA_TOP: Final = MARGIN + TITLE_HEIGHT + 24
COLUMN_LABEL_HEIGHT: Final = 36
COLUMN_COLOUR: Final = BAR_COLOURS[0]


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its label under it, its value (its height) and the value as shown above."""

    label: str
    value: float
    shown: str


class ChartPainter:
    """Draws horizontal bar charts, one panel per question."""

    def __init__(self, font: str = "") -> None:
        self.cjk_font = find_cjk_font(font)
        self.latin_font = find_latin_font()

    def can_label(self, texts: Sequence[str]) -> bool:
        """True when every text can be drawn with the fonts at hand."""
        return all(_drawable(text, self.cjk_font is not None) for text in texts)

    def _font(self, size: int) -> Font:
        path = self.cjk_font or self.latin_font
        if path is not None:
            return ImageFont.truetype(path, size)
        return ImageFont.load_default(size)

    def render(
        self,
        title: str,
        panels: Sequence[Panel],
        *,
        numbered_title: str = "",
        questions: bool = True,
    ) -> ChartPicture:
        """The chart of every panel under `title`; numbered (under `numbered_title`) when a
        label cannot be drawn. `questions`: the panels are a survey's (headed Q1, Q2, …, each
        bar with its share of the panel); otherwise plain figures."""
        texts = [title, *(p.title for p in panels), *(p.note for p in panels)]
        texts += [bar.label for p in panels for bar in p.bars]
        numbered = not self.can_label(texts)
        height = MARGIN * 2 + TITLE_HEIGHT
        for panel in panels:
            bars = max(len(panel.bars), 1)
            height += PANEL_TITLE_HEIGHT + bars * (BAR_HEIGHT + BAR_GAP) + PANEL_GAP
        height = min(height, MAX_HEIGHT)
        image = Image.new("RGB", (WIDTH, height), BACKGROUND)
        draw = ImageDraw.Draw(image)
        title_font, panel_font, bar_font = self._font(28), self._font(20), self._font(17)
        shown_title = numbered_title if numbered else title
        draw.text((MARGIN, MARGIN), shown_title, font=title_font, fill=TEXT)
        y = MARGIN + TITLE_HEIGHT
        label_width = NUMBER_LABEL_WIDTH if numbered else LABEL_WIDTH
        track_left = MARGIN + label_width
        track_right = WIDTH - MARGIN - VALUE_WIDTH
        for index, panel in enumerate(panels):
            if y + PANEL_TITLE_HEIGHT > height:
                break
            heading = f"Q{index + 1}" if numbered else f"Q{index + 1}  {panel.title}"
            if not questions:
                heading = "" if numbered and not _drawable(panel.title, False) else panel.title
            if panel.note and (not numbered or _drawable(panel.note, False)):
                heading += f"   {panel.note}"
            draw.text(
                (MARGIN, y),
                _fit(heading, panel_font, WIDTH - 2 * MARGIN),
                font=panel_font,
                fill=TEXT,
            )
            y += PANEL_TITLE_HEIGHT
            total = sum(bar.count for bar in panel.bars)
            most = max((bar.count for bar in panel.bars), default=0)
            colour = BAR_COLOURS[index % len(BAR_COLOURS)]
            for number, bar in enumerate(panel.bars, start=1):
                if y + BAR_HEIGHT > height:
                    break
                label = str(number) if numbered else bar.label
                draw.text(
                    (MARGIN, y + 2),
                    _fit(label, bar_font, label_width - 10),
                    font=bar_font,
                    fill=TEXT,
                )
                draw.rectangle((track_left, y, track_right, y + BAR_HEIGHT), fill=TRACK)
                if most:
                    right = track_left + round((track_right - track_left) * bar.count / most)
                    if bar.count:
                        draw.rectangle((track_left, y, right, y + BAR_HEIGHT), fill=colour)
                share = f" ({bar.count * 100 / total:.0f}%)" if total and questions else ""
                draw.text(
                    (track_right + 10, y + 2), f"{bar.count}{share}", font=bar_font, fill=MUTED
                )
                y += BAR_HEIGHT + BAR_GAP
            y += PANEL_GAP
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
        return ChartPicture(out.getvalue(), numbered)

    def render_columns(
        self, title: str, columns: Sequence[Column], *, fallback_title: str
    ) -> ChartPicture:
        """A small column chart under `title` (`fallback_title` when the fonts cannot draw it;
        labels and values should be ASCII, so they always can)."""
        numbered = not self.can_label([title])
        image = Image.new("RGB", (COLUMNS_WIDTH, COLUMNS_HEIGHT), BACKGROUND)
        draw = ImageDraw.Draw(image)
        title_font, label_font = self._font(24), self._font(16)
        shown_title = fallback_title if numbered else title
        draw.text(
            (MARGIN, MARGIN),
            _fit(shown_title, title_font, COLUMNS_WIDTH - 2 * MARGIN),
            font=title_font,
            fill=TEXT,
        )
        bottom = COLUMNS_HEIGHT - MARGIN - COLUMN_LABEL_HEIGHT
        draw.line((MARGIN, bottom, COLUMNS_WIDTH - MARGIN, bottom), fill=MUTED, width=1)
        slot = (COLUMNS_WIDTH - 2 * MARGIN) / max(len(columns), 1)
        most = max((column.value for column in columns), default=0.0)
        for index, column in enumerate(columns):
            left = MARGIN + index * slot
            centre = left + slot / 2
            width = slot * 0.6
            if most > 0 and column.value > 0:
                # The tallest column fills the area; a tiny one still shows as a sliver.
                height = max(2.0, (bottom - COLUMN_AREA_TOP) * column.value / most)
                top = bottom - height
                draw.rectangle(
                    (centre - width / 2, top, centre + width / 2, bottom), fill=COLUMN_COLOUR
                )
            else:
                top = bottom
            value = _fit(column.shown, label_font, int(slot) - 4)
            draw.text(
                (centre - label_font.getlength(value) / 2, top - 22),
                value,
                font=label_font,
                fill=MUTED,
            )
            label = _fit(column.label, label_font, int(slot) - 4)
            draw.text(
                (centre - label_font.getlength(label) / 2, bottom + 8),
                label,
                font=label_font,
                fill=TEXT,
            )
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
        return ChartPicture(out.getvalue(), numbered)


def _fit(text: str, font: Font, width: int) -> str:
    """The text, shortened with an ellipsis to fit `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


@lru_cache(maxsize=4)
def chart_painter(font: str = "") -> ChartPainter:
    """The shared painter for a configured font (looking fonts up once per process)."""
    return ChartPainter(font)
