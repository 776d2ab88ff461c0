"""A braille canvas: layers of pixels in 2×4 dots per cell, zone bands as cell backgrounds.

Pure numpy + rich (no Textual). A chart fills layers from decimated columns, then asks for
styled lines of text; the drawing cost depends on the chart's size, never on the series length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.style import Style
from rich.text import Text

from traintop.tui.series import Decimated

_BRAILLE_BASE = 0x2800
# dot bit of pixel (row within cell 0..3, column within cell 0..1)
_DOT_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint16)


@dataclass
class Layer:
    """Pixels of one series in one style; later layers are drawn over earlier ones."""

    pixels: np.ndarray
    style: Style


@dataclass
class BrailleCanvas:
    """``width`` × ``height`` cells mapping y values in ``[y0, y1]`` onto ``height*4`` pixel rows."""

    width: int
    height: int
    y0: float
    y1: float
    layers: list[Layer] = field(default_factory=list)
    bands: list[tuple[float, float, Style]] = field(default_factory=list)

    @property
    def px_w(self) -> int:
        """Pixel columns (two per cell)."""
        return self.width * 2

    @property
    def px_h(self) -> int:
        """Pixel rows (four per cell)."""
        return self.height * 4

    def _rows(self, y: np.ndarray) -> np.ndarray:
        span = (self.y1 - self.y0) or 1.0
        r = (self.y1 - y) / span * (self.px_h - 1)
        return np.clip(np.round(r), 0, self.px_h - 1)

    def add_columns(self, dec: Decimated, style: Style, *, connect: bool = True) -> None:
        """Draw one decimated series: each column's min..max, joined to the previous column's last."""
        lo, hi, last = dec.lo, dec.hi, dec.last
        have = np.isfinite(lo)
        idx = np.flatnonzero(have)
        if connect and len(idx) >= 2:
            # sparse data (fewer points than columns): join the points across the empty columns
            span = np.arange(idx[0], idx[-1] + 1)
            empty = span[~have[span]]
            if len(empty):
                lo, hi, last = lo.copy(), hi.copy(), last.copy()
                lo[empty] = hi[empty] = last[empty] = np.interp(empty, idx, last[idx])
                have = np.isfinite(lo)
        top = np.where(have, self._rows(np.where(have, hi, 0.0)), np.nan)
        bot = np.where(have, self._rows(np.where(have, lo, 0.0)), np.nan)
        if connect and have.any():
            # extend each column towards the previous drawn column's last value, so lines join
            idx = np.flatnonzero(have)
            prev_last = self._rows(last[idx[:-1]])
            cur = idx[1:]
            top[cur] = np.minimum(top[cur], prev_last)
            bot[cur] = np.maximum(bot[cur], prev_last)
        rows = np.arange(self.px_h)[:, None]
        with np.errstate(invalid="ignore"):
            pix = (rows >= top[None, :]) & (rows <= bot[None, :])
        self.layers.append(Layer(pix, style))

    def add_points(self, cols: np.ndarray, ys: np.ndarray, style: Style) -> None:
        """Single dots at pixel columns ``cols`` (eval points)."""
        pix = np.zeros((self.px_h, self.px_w), dtype=bool)
        ok = np.isfinite(ys) & (cols >= 0) & (cols < self.px_w)
        if ok.any():
            r = self._rows(ys[ok]).astype(np.int64)
            c = cols[ok].astype(np.int64)
            pix[r, c] = True
            pix[np.clip(r - 1, 0, self.px_h - 1), c] = True  # two dots tall: visible beside the line
        self.layers.append(Layer(pix, style))

    def add_band(self, low: float, high: float, style: Style) -> None:
        """Colour the background of cells whose centre lies in ``[low, high]``."""
        self.bands.append((low, high, style))

    def render(self) -> list[Text]:
        """One ``Text`` per cell row."""
        w, h = self.width, self.height
        codes = np.zeros((h, w), dtype=np.uint16)
        owner = np.full((h, w), -1, dtype=np.int64)
        for i, layer in enumerate(self.layers):
            cells = layer.pixels.reshape(h, 4, w, 2)
            bits = (cells * _DOT_BITS[None, :, None, :]).sum(axis=(1, 3)).astype(np.uint16)
            codes |= bits
            owner[bits > 0] = i
        span = (self.y1 - self.y0) or 1.0
        centres = self.y1 - (np.arange(h) + 0.5) / h * span
        row_bg: list[Style | None] = []
        for yc in centres:
            bg: Style | None = None
            for low, high, style in self.bands:
                if low <= yc <= high:
                    bg = style
            row_bg.append(bg)
        styles = [layer.style for layer in self.layers]
        # every cell's character at once: a blank, or the braille pattern of its dots
        chars = np.where(codes == 0, 0x20, codes.astype(np.uint32) + _BRAILLE_BASE).astype("<u4")
        lines: list[Text] = []
        for r in range(h):
            row = chars[r].tobytes().decode("utf-32-le")
            bg = row_bg[r]
            text = Text(row)
            owners = owner[r]
            cuts = [0, *(np.flatnonzero(owners[1:] != owners[:-1]) + 1).tolist(), w] if w else [0]
            for a, b in zip(cuts, cuts[1:]):  # one span per run of cells drawn by the same layer
                o = int(owners[a])
                fg = styles[o] if o >= 0 else None
                cell = (fg + bg) if (fg and bg) else (fg or bg)
                if cell is not None:
                    text.stylize(cell, a, b)
            lines.append(text)
        return lines
