"""``SamplesPane``: samples by step; the selected one's mel drawn in half-block colour cells.

Enter (or a click) plays the sample: in a browser (``traintop serve``) the wav is delivered to a
new tab, which plays it; in a terminal, where the audio lives on another machine, it shows the
path and an ``scp`` line (also copied to the clipboard where the terminal allows it).
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
from pathlib import Path
from typing import Any

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widget import Widget
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from traintop.protocol.safefile import open_read
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.sources.find import run_file

# a small perceptual ramp (dark blue → green → yellow), like the usual spectrogram colours
_RAMP = [(13, 8, 135), (84, 2, 163), (139, 10, 165), (185, 50, 137), (219, 92, 104), (244, 136, 73),
         (254, 188, 43), (240, 249, 33)]


def _colour(v: float) -> str:
    i = min(len(_RAMP) - 1, max(0, int(v * (len(_RAMP) - 1) + 0.5)))
    r, g, b = _RAMP[i]
    return f"#{r:02x}{g:02x}{b:02x}"


def mel_text(mel: np.ndarray, width: int, height: int) -> Text:
    """A mel array (bins × frames, low bins first) as ``height`` rows of ``▀`` cells, 2 bins per cell."""
    m = np.asarray(mel, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        return Text(f"mel has shape {m.shape}; expected bins × frames", style="red")
    if m.shape[0] > m.shape[1] * 4:  # frames × bins on disk: turn it so frequency runs up
        m = m.T
    finite = np.isfinite(m)
    lo, hi = (np.percentile(m[finite], [2, 98]) if finite.any() else (0.0, 1.0))
    norm = np.clip((np.nan_to_num(m, nan=lo) - lo) / ((hi - lo) or 1.0), 0, 1)
    rows, cols = max(2, height * 2), max(1, width)
    ri = np.linspace(m.shape[0] - 1, 0, rows).round().astype(int)  # high frequencies at the top
    ci = np.linspace(0, m.shape[1] - 1, cols).round().astype(int)
    grid = norm[ri][:, ci]
    t = Text()
    for r in range(0, rows - 1, 2):
        for c in range(cols):
            t.append("▀", Style(color=_colour(grid[r, c]), bgcolor=_colour(grid[r + 1, c])))
        if r + 2 < rows - 1:
            t.append("\n")
    return t


MAX_MEL_BYTES = 64 << 20  # a mel of a few minutes of audio is < 10 MB; a bigger file is not one of ours


def load_mel(run_dir: Path, named: str) -> np.ndarray:
    """The mel array a sample event names: a regular ``.npy`` file of the run, bounded, never unpickled."""
    with open_read(run_file(run_dir, named)) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_MEL_BYTES:
            raise ValueError(f"{named}: {size:,} bytes, larger than a mel can be ({MAX_MEL_BYTES:,}); not read")
        return np.load(fh, allow_pickle=False)  # never unpickle: a sample file is data, not code


def scp_line(path: Path) -> str:
    """An ``scp`` command that copies ``path`` from this machine to the current folder of another."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = ""
    host = socket.gethostname() or "HOST"
    return f"scp {user + '@' if user else ''}{host}:{shlex.quote(str(path.resolve()))} ."


class SampleList(OptionList):
    """Samples by step, newest first."""

    BINDINGS = [Binding("enter", "select", "Play", show=False)]  # listed in docs/guide/watching.md; the footer is full

    class Chosen(Message):
        """A sample was highlighted."""

        def __init__(self, sample: dict[str, Any]) -> None:
            self.sample = sample
            super().__init__()

    class Play(Message):
        """A sample was selected (Enter or a click): play it."""

        def __init__(self, sample: dict[str, Any]) -> None:
            self.sample = sample
            super().__init__()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._samples: list[dict[str, Any]] = []

    def show(self, samples: list[dict[str, Any]]) -> None:
        """Rebuild when samples were added."""
        if len(samples) == len(self._samples):
            return
        self._samples = list(reversed(samples))
        self.clear_options()
        options = []
        for s in self._samples:
            t = Text(f"step {s.get('step', '?'):>7,} " if isinstance(s.get("step"), int) else "step ? ")
            if s.get("error"):
                t.append("failed", style="bold red")
            else:
                t.append(shown(s.get("text") or "")[:14], style="dim")
            options.append(Option(t))
        self.add_options(options or [Option(Text("no samples yet", style="dim"), disabled=True)])
        if self._samples:
            self.highlighted = 0

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Tell the pane which sample is under the cursor."""
        event.stop()
        if 0 <= event.option_index < len(self._samples):
            self.post_message(self.Chosen(self._samples[event.option_index]))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Ask the pane to play the selected sample."""
        event.stop()
        if 0 <= event.option_index < len(self._samples):
            self.post_message(self.Play(self._samples[event.option_index]))


class SamplesPane(Horizontal):
    """The sample list beside the selected sample's mel and paths; ``run_dir`` anchors relative paths."""

    def __init__(self, run_dir: Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_dir = Path(run_dir) if run_dir is not None else Path(".")

    def compose(self) -> Any:
        """List on the left, detail on the right."""
        yield SampleList(id="sample-list")
        yield SampleDetail(id="sample-detail")

    def show_detail(self, sample: dict[str, Any], mel: Any, error: str | None) -> None:
        """Draw ``sample`` (its mel already loaded by a worker, or the error that stopped it)."""
        self.query_one(SampleDetail).show(sample, mel, error)

    def on_sample_list_play(self, event: SampleList.Play) -> None:
        """Play the selected sample where the person is."""
        event.stop()
        self.play(event.sample)

    def play(self, sample: dict[str, Any]) -> None:
        """In a browser, deliver the wav to a new tab; in a terminal, show its path and an scp line."""
        wav = sample.get("wav")
        if not isinstance(wav, str) or not wav:
            self.app.notify("this sample has no wav file", severity="warning", markup=False)
            return
        try:
            path = run_file(self.run_dir, wav)  # only a regular file of this run, never one an event points at
            fh = open_read(path) if self.app.is_web else None
        except OSError as exc:
            self.app.notify(f"not played: {shown(exc.strerror or exc)}", severity="error", markup=False)
            return
        if fh is not None:
            self.app.deliver_binary(fh, open_method="browser", mime_type="audio/wav", save_filename=path.name)
            self.app.notify(f"playing {shown(path.name)} in a new tab (allow pop-ups for this page if none opens)",
                            markup=False)
            return
        line = scp_line(path)
        self.app.copy_to_clipboard(line)
        self.app.notify(f"{shown(path)}\non your machine: {shown(line)}", title="sample (copied to the clipboard)",
                        timeout=30, markup=False)


class SampleDetail(Widget):
    """One sample: its text, its mel at the size the pane has, and the wav paths."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._state: tuple[dict[str, Any], Any, str | None] | None = None

    def show(self, sample: dict[str, Any], mel: Any, error: str | None) -> None:
        """Keep what to draw; ``render`` fits it to the current size."""
        self._state = (sample, mel, error)
        self.refresh()

    def render(self) -> Text:
        """The sample's detail."""
        if self._state is None:
            return Text("select a sample", style="dim")
        sample, mel, error = self._state
        width = max(10, self.content_size.width)
        height = max(3, self.content_size.height - 5)
        t = Text()
        t.append(f"step {shown(sample.get('step'))}", style="bold")
        if sample.get("error"):
            t.append("\nsampling failed: ", style="bold red")
            t.append(shown(sample["error"], MESSAGE_MAX))
            return t
        t.append(f"  “{shown(sample.get('text', ''), MESSAGE_MAX)}”\n")
        if mel is not None:
            t.append_text(mel_text(mel, width, height))
        elif error:
            t.append(f"no mel to draw: {shown(error, MESSAGE_MAX)}", style="yellow")
        else:
            t.append("no mel array for this sample", style="dim")
        t.append("\noutput    ", style="dim")
        t.append(shown(sample.get("wav") or "–", MESSAGE_MAX))
        t.append("\nreference ", style="dim")
        t.append(shown(sample.get("reference") or "–", MESSAGE_MAX))
        return t
