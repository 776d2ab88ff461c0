#!/usr/bin/env bash
# The wheels the device image lacks, for `benchmarks/gpu_check.py` there (Python 3.12, x86_64), into
# .whl/ (ignored by git; the device tool carries it). The image has torch / torchaudio 2.11 with CUDA,
# tokenizers, nvidia-ml-py, psutil, numpy, rich and pyyaml; it lacks coqui-tts, Textual and our
# other dependencies, and its transformers is 5.x, which breaks XTTS inference: 4.57 travels.
# On the device:  python3 -m pip install --no-deps .whl/*.whl && python3 benchmarks/gpu_check.py --out $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
PY=${PY:-.venv/bin/python}
# the versions this checkout's venv resolved: what CI tests is what travels
pins=$("$PY" - <<'PYEOF'
import importlib.metadata as md
names = ["textual", "textual-serve", "aiohttp-jinja2", "watchdog", "msgspec", "orjson", "platformdirs",
         "linkify-it-py", "mdit-py-plugins", "coqpit-config", "coqui-tts", "coqui-tts-trainer",
         "anyascii", "inflect", "typeguard", "more-itertools", "jaraco.functools", "num2words",
         "pysbd", "monotonic-alignment-search", "espeakng-loader", "librosa", "audioread", "soxr",
         "soundfile", "pooch", "decorator", "cffi", "pycparser", "tzdata", "ko-speech-tools", "transformers"]
print(" ".join(f"{n}=={md.version(n)}" for n in names))
PYEOF
)
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 --abi abi3 --abi none --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any -d .whl $pins
# docopt ships as an sdist only (pure Python): a wheel built here installs there
"$PY" -m pip wheel --quiet --no-deps -w .whl "docopt==$("$PY" -c 'import importlib.metadata as m; print(m.version("docopt"))')"
ls .whl | wc -l | xargs echo "wheels:"
du -sh .whl
