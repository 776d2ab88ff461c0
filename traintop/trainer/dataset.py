"""The demo dataset: two Brazilian-Portuguese voices synthesized with espeak-ng, in coqui's format.

Nothing is downloaded: the ``espeakng-loader`` wheel carries libespeak-ng and its data, which we
drive through ctypes. The result is deterministic and cached; it is built in a temporary directory
and renamed into place, so a half-written dataset is never mistaken for a whole one.

Layout (coqui's ``coqui`` formatter)::

    <cache>/demo-ptbr-v2/
        metadata.csv      audio_file|text|speaker_name|emotion_name
        wavs/<speaker>_<nnn>.wav   22050 Hz mono 16-bit
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import wave
from pathlib import Path

SAMPLE_RATE = 22050
DATASET_NAME = "demo-ptbr-v2"  # bump when sentences or voices change, so caches are rebuilt
METADATA_FILE = "metadata.csv"
SPEAKERS: dict[str, str] = {"ana": "pt-br+f3", "bruno": "pt-br+m3"}

SENTENCES: tuple[str, ...] = (
    "O sol nasceu cedo hoje.",
    "A casa fica perto do rio.",
    "Eu gosto de café com leite.",
    "O gato dorme no sofá.",
    "Vamos ao mercado amanhã.",
    "A chuva caiu a noite toda.",
    "Ela canta muito bem.",
    "O trem chegou atrasado.",
    "Meu irmão mora em Recife.",
    "As crianças brincam no parque.",
    "O livro está em cima da mesa.",
    "Hoje o céu está azul.",
    "A porta da cozinha está aberta.",
    "Ele comprou pão fresco.",
    "Nós vamos viajar em julho.",
    "O cachorro late para o carteiro.",
    "A música tocava baixinho.",
    "O vento frio veio do sul.",
    "Ela escreveu uma carta longa.",
    "O jantar fica pronto às oito.",
    "A praia estava cheia de gente.",
    "O professor explicou a lição.",
    "Minha avó faz bolo de milho.",
    "O ônibus passa a cada hora.",
    "A flor amarela abriu hoje.",
    "Ele correu até a esquina.",
    "O filme começa às nove.",
    "A janela do quarto quebrou.",
    "Eles plantaram uma árvore.",
    "O peixe nada no aquário.",
    "A lua brilha sobre o mar.",
    "Precisamos de mais água.",
    "O médico chegou cedo.",
    "A loja fecha ao meio dia.",
    "O menino aprendeu a nadar.",
    "A festa foi muito animada.",
    "O relógio parou de novo.",
    "Ela abriu o guarda chuva.",
    "O caminho era longo e calmo.",
    "A banda tocou até tarde.",
    "O pássaro cantou na janela.",
    "Eu li o jornal de manhã.",
    "A sopa está quente demais.",
    "Ele perdeu a chave do carro.",
    "A ponte liga as duas cidades.",
    "O inverno chegou mais cedo.",
    "Ela pintou a parede de verde.",
    "O café da fazenda é forte.",
)

# espeak-ng constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


class DatasetError(RuntimeError):
    """The demo dataset could not be built; the message says which step failed."""


def cache_root() -> Path:
    """``$TRAINTOP_CACHE/demo-data`` or ``~/.cache/traintop/demo-data``."""
    base = os.environ.get("TRAINTOP_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "traintop"
    return root / "demo-data"


class EspeakVoice:
    """A minimal ctypes binding to libespeak-ng from the ``espeakng-loader`` wheel.

    espeak-ng keeps global state, so one process-wide lock serializes every synthesis.
    """

    _lock = threading.Lock()
    _lib: ctypes.CDLL | None = None
    _rate = 0

    def __init__(self) -> None:
        with self._lock:
            if EspeakVoice._lib is None:
                EspeakVoice._lib, EspeakVoice._rate = self._load()
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # kept alive while espeak may call it

    @staticmethod
    def _load() -> tuple[ctypes.CDLL, int]:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise DatasetError("the demo dataset needs the 'espeakng-loader' package "
                               "(pip install espeakng-loader)") from exc
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint,
                                     ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise DatasetError(f"espeak_Initialize failed (returned {rate}) with data at {data!r}")
        # espeak_Initialize seeds its noise generator from the clock: fix it, or every build differs
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed(1)
        ctypes.CDLL(None).srand(1)
        return lib, rate

    @property
    def sample_rate(self) -> int:
        """espeak-ng's output rate (22050 Hz)."""
        return self._rate

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int) -> int:
        if n > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        return 0  # 0 = keep synthesizing

    def synth(self, text: str, voice: str) -> bytes:
        """Synthesize ``text`` with ``voice`` (e.g. ``pt-br+f3``); return 16-bit mono PCM."""
        lib = self._lib
        assert lib is not None
        with self._lock:
            self._chunks = []
            lib.espeak_SetSynthCallback(self._callback)
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise DatasetError(f"espeak-ng has no voice {voice!r}")
            raw = text.encode("utf-8") + b"\0"
            err = lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise DatasetError(f"espeak_Synth failed ({err}) on {text!r}")
            lib.espeak_Synchronize()
            return b"".join(self._chunks)


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    """Write 16-bit mono PCM as a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def _build(target: Path) -> None:
    voice = EspeakVoice()
    if voice.sample_rate != SAMPLE_RATE:
        raise DatasetError(f"espeak-ng runs at {voice.sample_rate} Hz, expected {SAMPLE_RATE}")
    (target / "wavs").mkdir(parents=True)
    lines = ["audio_file|text|speaker_name|emotion_name"]
    for speaker, voice_name in SPEAKERS.items():
        for i, text in enumerate(SENTENCES):
            rel = f"wavs/{speaker}_{i:03d}.wav"
            pcm = voice.synth(text, voice_name)
            if len(pcm) < SAMPLE_RATE // 5:
                raise DatasetError(f"espeak-ng produced almost no audio for {text!r}")
            write_wav(target / rel, pcm, SAMPLE_RATE)
            lines.append(f"{rel}|{text}|{speaker}|neutral")
    (target / METADATA_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def ensure_demo_dataset(root: Path | None = None) -> Path:
    """Return the demo dataset directory, synthesizing it first when it is not cached yet."""
    root = root or cache_root()
    target = root / DATASET_NAME
    if (target / METADATA_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DATASET_NAME}-", dir=root))
    try:
        # espeak-ng keeps synthesis state across utterances in its C globals (two identical calls
        # in one process differ), so every build runs in a fresh process: same bytes every time.
        pkg_root = str(Path(__file__).resolve().parents[2])  # importable from a checkout too
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (pkg_root, os.environ.get("PYTHONPATH", "")) if p)}
        res = subprocess.run([sys.executable, "-m", "traintop.trainer.dataset", str(tmp / "data")],
                             capture_output=True, text=True, timeout=600, env=env)
        if res.returncode != 0:
            raise DatasetError(f"building the demo dataset failed: {res.stderr.strip()[-2000:]}")
        try:
            os.rename(tmp / "data", target)  # atomic: readers see all of it or nothing
        except OSError:
            if not (target / METADATA_FILE).is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def speaker_reference(dataset: Path, speaker: str, index: int = 0) -> Path:
    """The wav of one demo utterance, used as a sample's reference clip."""
    return dataset / "wavs" / f"{speaker}_{index:03d}.wav"


FORMATTERS = ("coqui", "ljspeech")


def load_metadata(root: Path, formatter: str, meta_file: str, language: str) -> list[dict[str, str]]:
    """Read a dataset's metadata into coqui sample dicts, refusing bad lines by file and line.

    ``coqui``: header ``audio_file|text[|speaker_name[|emotion_name]]``; ``ljspeech``:
    ``id|text|normalized text`` with wavs in ``wavs/<id>.wav``.
    """
    if formatter not in FORMATTERS:
        raise DatasetError(f"dataset.formatter {formatter!r} is not supported "
                           f"(use one of {', '.join(FORMATTERS)})")
    meta = root / meta_file
    if not meta.is_file():
        raise DatasetError(f"{root}: no metadata file {meta_file!r} (dataset.path / dataset.meta_file)")
    lines = _read_lines(meta)
    samples: list[dict[str, str]] = []
    header: list[str] = []
    if formatter == "coqui":
        if not lines:
            raise DatasetError(f"{meta}: empty metadata file")
        header = lines[0].split("|")
        if header[:2] != ["audio_file", "text"]:
            raise DatasetError(f"{meta}:1: header must start with 'audio_file|text', got {lines[0]!r}")
    for n, line in enumerate(lines, start=1):
        if formatter == "coqui" and n == 1 or not line.strip():
            continue
        cols = line.split("|")
        if formatter == "coqui":
            row = dict(zip(header, cols, strict=False))
            wav, text = root / row.get("audio_file", ""), row.get("text", "")
            speaker = row.get("speaker_name") or "coqui"
        else:
            if len(cols) < 3:
                raise DatasetError(f"{meta}:{n}: expected 3 '|'-separated columns, got {len(cols)}")
            wav, text, speaker = root / "wavs" / f"{cols[0]}.wav", cols[2], "ljspeech"
        if not text.strip():
            raise DatasetError(f"{meta}:{n}: empty transcript for {wav.name}")
        if not wav.is_file():
            raise DatasetError(f"{meta}:{n}: audio file {wav} does not exist")
        _check_audio(wav, f"{meta}:{n}")
        samples.append({"text": text.strip(), "audio_file": str(wav), "speaker_name": speaker,
                        "language": language, "root_path": str(root), "audio_unique_name": wav.stem})
    if not samples:
        raise DatasetError(f"{meta}: no samples")
    return samples


def _read_lines(meta: Path) -> list[str]:
    """The metadata's lines, refusing bytes that are not UTF-8 by line and column."""
    out = []
    for n, raw in enumerate(meta.read_bytes().splitlines(), start=1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{meta}:{n}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                               f"{exc.start + 1}); save the file as UTF-8") from None
    return out


def _check_audio(wav: Path, where: str) -> None:
    """Refuse an audio file that cannot hold audio (empty, or a WAV without its header)."""
    size = wav.stat().st_size
    if size == 0:
        raise DatasetError(f"{where}: audio file {wav} is empty (0 bytes)")
    if wav.suffix.lower() == ".wav":
        with wav.open("rb") as fh:
            head = fh.read(12)
        if size < 44 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            raise DatasetError(f"{where}: audio file {wav} is not a WAV file ({size} bytes, no "
                               "RIFF/WAVE header)")


def split_samples(samples: list[dict[str, str]], eval_fraction: float,
                  ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Deterministic train / eval split: every k-th sample goes to eval (at least one when asked)."""
    if eval_fraction <= 0 or len(samples) < 2:
        return samples, []
    k = max(2, round(1 / eval_fraction))
    evals = samples[::k]
    train = [s for i, s in enumerate(samples) if i % k]
    return train, evals


if __name__ == "__main__":
    _build(Path(sys.argv[1]))  # the fresh process ensure_demo_dataset runs a build in
