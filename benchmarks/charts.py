"""Drawing 9 loss charts at 200×60: our braille canvas against ``textual-plotext``.

    python benchmarks/charts.py [--points 10000 1000000] [--repeat 5] [--json]

Both draw the same thing per chart (a 66×20 cell of a 3×3 grid): the raw series and its EMA, as
braille, to a ``rich.text.Text``. Ours decimates per pixel column first (``tui.series.decimate``),
so its cost follows the chart's size; plotext is handed the points, as its users do. Needs
``textual-plotext`` installed (a benchmark-only tool, not a dependency of traintop).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.style import Style  # noqa: E402
from rich.text import Text  # noqa: E402

from traintop.tui.canvas import BrailleCanvas  # noqa: E402
from traintop.tui.series import debiased_ema, decimate, nice_range  # noqa: E402

CELL_W, CELL_H, CHARTS = 200 // 3, 60 // 3, 9
GUTTER = 8


def series(n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chart ``k``'s steps, raw values and EMA (the EMA is kept up to date by the reader, not per draw)."""
    rng = np.random.default_rng(k)
    x = np.arange(n, dtype=np.float64)
    y = (2.0 + k) * np.exp(-x / (n / 4)) + 0.1 + 0.05 * rng.standard_normal(n)
    return x, y, debiased_ema(y, 0.9)


def ours(x: np.ndarray, y: np.ndarray, ema: np.ndarray) -> list[Text]:
    """One chart on our braille canvas, as the loss chart draws it (a zone band included)."""
    w, h = CELL_W - GUTTER, CELL_H - 2
    d_raw = decimate(x, y, float(x[0]), float(x[-1]), 2 * w)
    d_ema = decimate(x, ema, float(x[0]), float(x[-1]), 2 * w)
    y0, y1 = nice_range(float(np.nanmin(d_raw.lo)), float(np.nanmax(d_raw.hi)), False)
    canvas = BrailleCanvas(w, h, y0, y1)
    canvas.add_band(y0, (y0 + y1) / 2, Style(bgcolor="#10301c"))
    canvas.add_columns(d_raw, Style(color="bright_black"))
    canvas.add_columns(d_ema, Style(color="bright_white", bold=True))
    return canvas.render()


def plotext(x: np.ndarray, y: np.ndarray, ema: np.ndarray) -> Text:
    """The same chart with textual-plotext's ``Plot`` (what ``PlotextPlot.render`` does)."""
    from textual_plotext.plot import Plot

    p = Plot()
    p.plotsize(CELL_W, CELL_H)
    p._set_size(CELL_W, CELL_H)  # as PlotextPlot.render does (textual-plotext issue 5)
    p.plot(x.tolist(), y.tolist(), marker="braille")
    p.plot(x.tolist(), ema.tolist(), marker="braille")
    return Text.from_ansi(p.build())


def time_grid(draw, n: int, repeat: int, charts: int = CHARTS) -> float:  # type: ignore[no-untyped-def]
    """Median seconds to draw ``charts`` charts of ``n`` points (scaled to 9 when fewer are drawn)."""
    data = [series(n, k) for k in range(charts)]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for x, y, ema in data:
            draw(x, y, ema)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * CHARTS / charts


def main() -> int:
    """Print (or emit) the comparison."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = []
    for n in args.points:
        mine = time_grid(ours, n, args.repeat)
        # plotext takes seconds per chart at 100k points and more: one chart, scaled to nine
        theirs = time_grid(plotext, n, 1 if n >= 100_000 else args.repeat, charts=1 if n >= 100_000 else CHARTS)
        out.append({"points": n, "braille_s": mine, "plotext_s": theirs})
    if args.json:
        print(json.dumps(out))
        return 0
    for r in out:
        print(f"9 charts × {r['points']:,} points at 200×60: braille canvas {1e3 * r['braille_s']:.1f} ms, "
              f"textual-plotext {1e3 * r['plotext_s']:.0f} ms ({r['plotext_s'] / r['braille_s']:.0f}× slower)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
