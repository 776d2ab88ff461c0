"""Real-shaped F5 files built in the tests: checkpoints of F5's own classes, random weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.trainer.conftest import REPO

# configs/F5TTS_v1_Base.yaml of f5-tts 1.1.x; the release vocab.txt has 2545 tokens
V1_BASE = {"dim": 1024, "depth": 22, "heads": 16, "ff_mult": 2, "text_dim": 512, "conv_layers": 4}
V1_VOCAB = 2545
TINY = {"dim": 32, "depth": 1, "heads": 2, "ff_mult": 2, "text_dim": 16, "conv_layers": 1}

BUILD = r"""
import sys, torch
from pathlib import Path
from safetensors.torch import save_file
from traintop.trainer.f5.model import build_cfm, write_random_vocos
from traintop.trainer.f5.settings import DEFAULTS
import json
out, arch, n_vocab = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
chars = list(" abcdefghijklmnopqrstuvwxyzáâãàçéêíóôõú,.!?'-")
tokens = chars + [f"tok{i}" for i in range(n_vocab - len(chars))]
out.mkdir(parents=True, exist_ok=True)
(out / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
torch.manual_seed(0)
cfm = build_cfm({**DEFAULTS["arch"], **arch}, DEFAULTS["mel_spec"], tokens)
# the key layout of an ema_pytorch EMA state dict, as F5 releases carry it (no second copy in memory)
state = {f"ema_model.{k}": v.contiguous() for k, v in cfm.state_dict().items()}
state.update(initted=torch.tensor(True), step=torch.tensor(1))
tmp = out / ".model.safetensors.tmp"
save_file(state, str(tmp))
tmp.replace(out / "model.safetensors")
write_random_vocos(out / "vocos", 0)
"""


def build_f5_files(folder: Path, arch: dict, n_vocab: int) -> Path:
    """``model.safetensors`` (EMA keys, as F5 releases), ``vocab.txt`` and ``vocos/`` in ``folder``."""
    if (folder / "model.safetensors").is_file() and (folder / "vocos" / "pytorch_model.bin").is_file():
        return folder
    import json

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # a separate process: the 1.3 GB model never lives in the pytest process
    subprocess.run([sys.executable, "-c", BUILD, str(folder), json.dumps(arch), str(n_vocab)],
                   cwd=REPO, env=env, check=True, timeout=900)
    return folder


def fixture_cache() -> Path:
    """Where real-shaped fixtures are kept between sessions (they take a minute to build)."""
    root = os.environ.get("TRAINTOP_TEST_CACHE") or Path.home() / ".cache" / "traintop-tests"
    return Path(root)
