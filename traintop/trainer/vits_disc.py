"""A narrower VITS discriminator for the tiny recipe: HiFi-GAN's scale and period discriminators
with the same layer pattern and fewer channels.

coqui's ``DiscriminatorS`` / ``DiscriminatorP`` hard-code widths up to 1024 (13.8 M parameters for
one scale plus one period discriminator), which dominates a toy VITS's step time on a CPU. These
subclasses keep coqui's ``forward`` and only rebuild the convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from TTS.tts.layers.vits.discriminator import DiscriminatorS, VitsDiscriminator
from TTS.vocoder.models.hifigan_discriminator import DiscriminatorP, get_padding


def _norm(use_spectral_norm: bool):  # noqa: ANN202 - returns torch's norm wrapper
    return nn.utils.spectral_norm if use_spectral_norm else nn.utils.parametrizations.weight_norm


class NarrowScaleDiscriminator(DiscriminatorS):
    """``DiscriminatorS`` with widths ``16, 32, 64, 128, 128, 128`` (instead of up to 1024)."""

    def __init__(self, use_spectral_norm: bool = False) -> None:
        super().__init__(use_spectral_norm)
        f = _norm(use_spectral_norm)
        self.convs = nn.ModuleList([
            f(nn.Conv1d(1, 16, 15, 1, padding=7)),
            f(nn.Conv1d(16, 32, 41, 4, groups=4, padding=20)),
            f(nn.Conv1d(32, 64, 41, 4, groups=8, padding=20)),
            f(nn.Conv1d(64, 128, 41, 4, groups=16, padding=20)),
            f(nn.Conv1d(128, 128, 41, 4, groups=32, padding=20)),
            f(nn.Conv1d(128, 128, 5, 1, padding=2)),
        ])
        self.conv_post = f(nn.Conv1d(128, 1, 3, 1, padding=1))


class NarrowPeriodDiscriminator(DiscriminatorP):
    """``DiscriminatorP`` with widths ``16, 32, 64, 128, 128`` (instead of up to 1024)."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3,
                 use_spectral_norm: bool = False) -> None:
        super().__init__(period, kernel_size, stride, use_spectral_norm)
        f = _norm(use_spectral_norm)
        pad = (get_padding(kernel_size, 1), 0)
        widths = [1, 16, 32, 64, 128]
        convs = [f(nn.Conv2d(a, b, (kernel_size, 1), (stride, 1), padding=pad))
                 for a, b in zip(widths, widths[1:], strict=False)]
        convs.append(f(nn.Conv2d(128, 128, (kernel_size, 1), 1, padding=(2, 0))))
        self.convs = nn.ModuleList(convs)
        self.conv_post = f(nn.Conv2d(128, 1, (3, 1), 1, padding=(1, 0)))


def narrow_discriminator(periods: Sequence[int], use_spectral_norm: bool = False) -> VitsDiscriminator:
    """A ``VitsDiscriminator`` made of the narrow scale and period discriminators."""
    disc = VitsDiscriminator(periods=(), use_spectral_norm=use_spectral_norm)
    disc.nets = nn.ModuleList([NarrowScaleDiscriminator(use_spectral_norm)] +
                              [NarrowPeriodDiscriminator(p, use_spectral_norm=use_spectral_norm)
                               for p in periods])
    return disc
