"""Writes the TensorFlow 2 / Keras 3 event files under ``tf2/`` (TensorFlow is too heavy for CI: the
files are committed, this script is how they were made).

    python3 -m venv /tmp/tfv
    /tmp/tfv/bin/pip install "tensorflow-cpu==2.21.*" tensorboard   # Keras 3.15 comes with it
    /tmp/tfv/bin/python tests/tensorboard/foreign/make_tf2.py

- ``tf2/keras/``: ``model.fit`` with the ``TensorBoard`` callback (``histogram_freq=1``) and validation
  data: Keras writes ``train/`` and ``validation/`` beside each other (one run to a user).
- ``tf2/summaries/``: ``tf.summary`` at two cadences (``train/loss_mel`` every step, ``train/loss_dur``
  every 10th), an eval every 50th, the learning rate, a histogram, a text and an audio clip (16-bit WAV).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent / "tf2"


def keras_run(out: Path) -> None:
    """A small regression fit as Keras users log it."""
    import keras

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((256, 8)).astype("float32")
    y = (x @ np.linspace(-1, 1, 8).astype("float32"))[:, None]
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x, y, epochs=12, batch_size=64, validation_split=0.25, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(log_dir=str(out), histogram_freq=1)])


def summaries_run(out: Path) -> None:
    """``tf.summary`` calls at different cadences, with non-scalar summaries beside them."""
    writer = tf.summary.create_file_writer(str(out))
    rate = 16000
    t = np.arange(rate // 4) / rate
    clip = (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32")[None, :, None]  # [k, frames, channels]
    with writer.as_default():
        for step in range(1, 301):
            tf.summary.scalar("train/loss_mel", 10.0 / step ** 0.3, step=step)
            tf.summary.scalar("train/learning_rate", 1e-3, step=step)
            if step % 10 == 0:
                tf.summary.scalar("train/loss_dur", 2.0 / step ** 0.2, step=step)
            if step % 50 == 0:
                tf.summary.scalar("eval/loss_mel", 11.0 / step ** 0.3, step=step)
                tf.summary.histogram("weights/dense", np.random.default_rng(step).standard_normal(64), step=step)
            if step % 100 == 0:
                tf.summary.text("notes", f"step {step}", step=step)
                tf.summary.audio("eval/sample", clip, rate, step=step, encoding="wav")
    writer.close()


def main() -> None:
    """Write every folder afresh."""
    shutil.rmtree(HERE, ignore_errors=True)
    keras_run(HERE / "keras")
    summaries_run(HERE / "summaries")
    for p in sorted(HERE.rglob("*")):
        if p.is_file():
            print(p.relative_to(HERE), p.stat().st_size)


if __name__ == "__main__":
    main()
