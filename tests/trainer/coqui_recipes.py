"""coqui-tts's own recipe scripts, taken from its sdist, changed only where a test must change them.

``recipe_script(relpath)`` returns the text of ``recipes/<relpath>`` from the sdist of the
installed coqui-tts version (downloaded once with ``pip download`` into the fixture cache).
``patch(text, (old, new), ...)`` replaces each ``old`` exactly once, so a recipe that changes
upstream fails loudly instead of running something else. ``with_traintop`` adds the two lines
before ``trainer.fit()``. ``ljspeech_dataset`` lays the demo voice out as LJSpeech (the layout
the recipes read).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

from tests.trainer.release_files import fixture_root

TWO_LINES = "    import traintop\n    traintop.attach(trainer)\n    trainer.fit()"


def coqui_sdist() -> Path:
    """The installed coqui-tts version's sdist (downloaded once into the fixture cache)."""
    wanted = version("coqui-tts")
    folder = fixture_root() / "sdists"
    found = folder / f"coqui_tts-{wanted}.tar.gz"
    if not found.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
                        ":all:", f"coqui-tts=={wanted}", "-d", str(folder)], check=True, timeout=600)
    return found


def recipe_script(relpath: str) -> str:
    """The text of ``recipes/<relpath>`` as coqui ships it."""
    sdist = coqui_sdist()
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(f"/recipes/{relpath}"))
        data = tar.extractfile(member)
        assert data is not None, member.name
        return data.read().decode()


def patch(text: str, *changes: tuple[str, str]) -> str:
    """Apply each ``(old, new)`` change; each ``old`` must occur exactly once."""
    for old, new in changes:
        assert text.count(old) == 1, f"the recipe changed upstream: {old!r} found {text.count(old)} times"
        text = text.replace(old, new)
    return text


def with_traintop(text: str) -> str:
    """The recipe plus ``import traintop`` / ``traintop.attach(trainer)`` before ``trainer.fit()``."""
    return patch(text, ("    trainer.fit()", TWO_LINES))


def ljspeech_dataset(demo: Path, target: Path, speaker: str | None = None) -> Path:
    """The demo dataset's clips of one speaker as an LJSpeech folder (``metadata.csv``, ``wavs/``)."""
    with (demo / "metadata.csv").open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter="|"))
    header, rows = rows[0], rows[1:]
    at = {name: i for i, name in enumerate(header)}
    speaker = speaker or rows[0][at["speaker_name"]]
    (target / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for row in rows:
        if row[at["speaker_name"]] != speaker:
            continue
        wav = demo / row[at["audio_file"]]
        link = target / "wavs" / wav.name
        if not link.exists():
            try:
                os.link(wav, link)
            except OSError:  # another filesystem
                shutil.copyfile(wav, link)
        text = row[at["text"]]
        lines.append(f"{wav.stem}|{text}|{text}")
    (target / "metadata.csv").write_text("\n".join(lines) + "\n")
    return target
