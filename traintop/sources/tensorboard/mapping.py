"""TensorBoard records as traintop events: scalars into rows, audio into samples.

A TensorBoard run's (``files``) scalars become ``step`` / ``eval`` rows by what each tag means
(``tags``), its audio ``sample`` events (decoded to WAV + a mel array in a cache directory, never
into the user's folder); tensors are series only with the ``scalars`` plugin and one value, the rest
is listed as not shown.

coqui logs its loss terms already weighted, and a TensorBoard file does not say by what: the
values are shown as logged, with no weights.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from traintop.sources.block import Block
from traintop.sources.lines import TailNotice
from traintop.sources.tensorboard.bulk import Part
from traintop.sources.tensorboard.columns import Columns, Pending, Series, make_block, merged, stream_rows
from traintop.sources.tensorboard.files import cache_dir
from traintop.sources.tensorboard.record import Audio, EventRecord
from traintop.sources.tensorboard.tags import TagRules, classify, guess_profile

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def tag_prefix(run_dir: Path, path: Path) -> str:
    """What the tags of an event file in a split folder are read under (``validation/``), else ``""``."""
    return "" if path.parent == run_dir else f"{path.parent.name}/"


def retag(prefix: str, parts: list[Part], records: list[tuple[int, EventRecord]]) -> None:
    """Put the tags of one split folder's file under ``prefix`` (its scope: train or eval)."""
    if not prefix:
        return
    for p in parts:
        p.tag = prefix + p.tag
    for _, rec in records:
        rec.scalars = [(prefix + t, v) for t, v in rec.scalars]
        rec.audio = [(prefix + t, a) for t, a in rec.audio]
        rec.tensors = [(prefix + t, pl, x) for t, pl, x in rec.tensors]
        rec.other = [(prefix + t, k) for t, k in rec.other]


def log_mel(wav: np.ndarray, rate: int, n_mels: int = 80) -> np.ndarray:
    """Log-mel spectrogram (n_mels × frames, float32) in numpy, for the samples pane."""
    n_fft, hop = 1024, 256
    if len(wav) < n_fft:
        wav = np.pad(wav, (0, n_fft - len(wav)))
    frames = np.lib.stride_tricks.sliding_window_view(wav, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    hz = np.linspace(0, rate / 2, n_fft // 2 + 1)
    mel_pts = np.linspace(0, 2595 * np.log10(1 + (rate / 2) / 700), n_mels + 2)
    edges = 700 * (10 ** (mel_pts / 2595) - 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.clip(np.minimum((hz - lo) / (mid - lo), (hi - hz) / (hi - mid)), 0, None)
    return np.log(np.clip(fb @ power.T, 1e-5, None)).astype(np.float32)


def decode_wav(encoded: bytes) -> tuple[np.ndarray, int]:
    """A WAV file's samples (mono float32) and rate; raise ``ValueError`` when it is not 16-bit PCM WAV."""
    import io
    import wave

    with wave.open(io.BytesIO(encoded)) as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{w.getsampwidth() * 8}-bit audio; only 16-bit PCM is decoded")
        rate, ch = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return (data.reshape(-1, ch).mean(axis=1) if ch > 1 else data), rate


def sample_event(run_dir: Path, tag: str, step: int, wall: float, audio: Audio) -> dict[str, Any]:
    """A ``sample`` event for an audio summary, its WAV and mel written to the cache directory."""
    ev: dict[str, Any] = {"v": 1, "type": "sample", "t": wall, "step": step, "text": tag, "reference": None}
    try:
        d = cache_dir(run_dir) / "samples"
        d.mkdir(parents=True, exist_ok=True)
        stem = f"{_SAFE.sub('-', tag).strip('-') or 'audio'}-{step}"
        wav_path, mel_path = d / f"{stem}.wav", d / f"{stem}.mel.npy"
        if not wav_path.exists():
            wav_path.write_bytes(audio.encoded)
        if not mel_path.exists():
            wav, rate = decode_wav(audio.encoded)
            np.save(mel_path, log_mel(wav, rate))
        ev.update(wav=str(wav_path), mel=str(mel_path))
    except Exception as exc:  # OSError, EOFError, wave.Error: the sample says why, the run goes on
        ev["error"] = f"{tag} at step {step}: audio not decodable ({exc})"
    return ev


class TagMapper:
    """Turns decoded event records into traintop events, holding back the newest step of each
    stream until it is complete (a later step arrived, or a read found nothing new)."""

    def __init__(self, run_dir: Path, rules: TagRules = ()) -> None:
        self.run_dir = run_dir
        self.rules = [(re.compile(pattern), action) for pattern, action in rules]
        self.pending = {"train": Pending(), "eval": Pending()}
        self.started = False
        self.coqui = False
        self.tags: set[str] = set()
        self.terms: set[str] = set()
        self._routes: dict[str, tuple[str, str] | None] = {}
        self.plugins: dict[str, str] = {}  # a tensor tag's plugin, from the first record that named it
        self.unshown: dict[str, str] = {}  # tags that are no series nor sample: what each is
        self._told = 0

    def _ruled(self, tag: str) -> tuple[str, str] | None:
        """The route a user's rule gives ``tag`` (``("ignore", tag)`` to leave it out), else None."""
        action = next((a for pattern, a in self.rules if pattern.search(tag)), None)
        if action is None:
            return None
        if action in ("train", "eval"):
            known = classify(tag, self.coqui)
            name = known[1] if known is not None and known[0] in ("train", "eval") else tag.rsplit("/", 1)[-1]
            return action, name if name not in ("lr", "grad_norm", "step_time", "loader_time", "total") else tag
        if action in ("bookkeeping", "ignore"):
            return action, tag
        return "train", action  # lr, grad_norm, total

    def _resolve(self, rec: EventRecord) -> None:
        """Tensors into scalars (plugin ``scalars``, one value) and samples (plugin ``audio``); the rest,
        and old-style images and histograms, are listed as not shown (TensorBoard's own rule)."""
        for tag, plugin, tensor in rec.tensors:
            if plugin:
                self.plugins[tag] = plugin
            plugin = self.plugins.get(tag)
            if plugin == "scalars" and tensor.size == 1 and tensor.number is not None:
                rec.scalars.append((tag, tensor.number))
            elif plugin == "audio" and tensor.strings:
                clips = tensor.strings[::2] if tensor.size > 1 and len(tensor.strings) > 1 else tensor.strings
                for i, wav in enumerate(clips):  # [k, 2]: (encoded clip, label) per clip
                    rec.audio.append((tag if i == 0 else f"{tag}/{i}", Audio(wav, 0.0, "audio/wav")))
            else:
                self.unshown.setdefault(tag, plugin or "tensor")
        for tag, kind in rec.other:
            self.unshown.setdefault(tag, kind)
        rec.tensors, rec.other = [], []

    def notices(self) -> list[TailNotice]:
        """One notice per tag found since the last call that traintop does not show."""
        tags = list(self.unshown.items())[self._told:]
        self._told += len(tags)
        return [TailNotice("not_shown", 0, f"{tag}: a counter or run summary, no loss (not judged)"
                           if kind == "bookkeeping" else f"{tag}: a {kind} summary (not shown)") for tag, kind in tags]

    def _route(self, tag: str) -> tuple[str, str] | None:
        if tag in self._routes:
            return self._routes[tag]
        if not self.coqui and tag.split("/")[0] in ("TrainIterStats", "EvalStats"):
            self.coqui = True
            self._routes.clear()  # earlier tags may read differently in coqui's scopes
        route = self._routes[tag] = self._ruled(tag) or classify(tag, self.coqui)
        if route is not None and route[0] == "bookkeeping":
            self.unshown.setdefault(tag, "bookkeeping")
        return route

    def add_bulk(self, parts: list[Part], records: list[tuple[int, EventRecord]]) -> Block:
        """A ``Block`` for scalars read as arrays (``bulk.scan``: a big read) plus ``records`` (with
        their file offsets) decoded one by one (a small read is records alone): every step of the
        read but each stream's newest, which is held back until it is complete."""
        loose: dict[str, list[tuple[int, int, float, float]]] = {}
        for _, rec in records:
            self._resolve(rec)
        for at, rec in records:  # rare shapes (step 0, tensors): parts of their own
            for t, v in rec.scalars:
                loose.setdefault(t, []).append((at, rec.step, rec.wall_time, v))
        for t, vals in loose.items():
            offsets, step, wall, value = zip(*vals, strict=True)
            parts.append(Part(t, np.array(step, dtype=np.int64), np.array(wall, dtype=np.float64),
                              np.array(value, dtype=np.float64), offsets[0], at=np.array(offsets, dtype=np.int64)))
        for p in parts:
            self._route(p.tag)  # a coqui scope anywhere in the read decides how every tag reads
        by_name: dict[str, dict[str, list[Part]]] = {"train": {}, "eval": {}}
        for p in sorted(parts, key=lambda p: p.first):
            route = self._route(p.tag)
            if route is None or route[0] in ("bookkeeping", "ignore"):
                continue
            stream, name = route
            self.tags.add(p.tag)
            if name not in ("lr", "grad_norm", "step_time", "loader_time", "total"):
                self.terms.add(name)
            by_name[stream].setdefault(name, []).append(p)
        out = {}
        for stream, names in by_name.items():
            series: dict[str, Series] = {name: merged(ps) for name, ps in names.items()}
            out[stream] = stream_rows(stream, self.pending[stream], series)
        rare = [sample_event(self.run_dir, t, rec.step, rec.wall_time, a) for _, rec in records for t, a in rec.audio]
        return self._block(out, rare)

    def _block(self, out: dict[str, Columns], rare: list[dict[str, Any]]) -> Block:
        """The rows and rare events as one ``Block``, after the ``run_start`` when they are the first."""
        first = [x[0]["t"][0] for x in out.values() if len(x[0].get("t", ()))]
        if (first or rare) and not self.started:
            self.started = True
            rare.insert(0, self.run_start(float(min(first)) if first else rare[0]["t"]))
        return make_block(out["train"], out["eval"], rare)

    def went_back(self) -> None:
        """A new writer starts again at an earlier step (the rows from there were purged): its values
        for the last step already made into a row are no late arrivals."""
        for p in self.pending.values():
            p.last_emitted = None

    def holding(self) -> bool:
        """Whether a newest step is held back (``flush`` would release it)."""
        return any(p.rows for p in self.pending.values())

    def flush(self) -> Block:
        """The held-back newest steps as rows (nothing new came: they are complete)."""
        return self._block({stream: stream_rows(stream, self.pending[stream], {}, hold_newest=False)
                            for stream in ("train", "eval")}, [])

    def run_start(self, t: float) -> dict[str, Any]:
        """The ``run_start`` a TensorBoard run never wrote: read-only, profile guessed from its tags."""
        return {"v": 1, "type": "run_start", "t": t, "run": self.run_dir.name, "recipe": "tensorboard",
                "profile": guess_profile(self.terms, self.tags), "terms": {}, "planned_steps": None,
                "planned_epochs": None, "host": None, "pid": None, "versions": {}, "resumed_from": None}
