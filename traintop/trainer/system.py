"""``SystemMonitor``: a thread that emits ``system`` events (GPUs via NVML, CPU and RSS via psutil).

It doubles as the run's heartbeat, so it keeps going while the trainer is paused. "No GPU" (no
driver, no NVML, no devices) is a normal state: the event then carries ``gpus: []``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

EmitFn = Callable[..., Any]


class GpuProbe:
    """Per-GPU utilisation, memory, temperature and power through NVML; empty when unavailable."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
        except Exception:  # no driver / no library / no device: all mean "no GPU"
            self._nvml = None
            self._handles = []

    def read(self) -> list[dict[str, Any]]:
        """One dict per GPU: ``index, util, mem_used, mem_total, temp, power`` (None when unknown)."""
        nv = self._nvml
        if nv is None:
            return []
        return [_gpu_reading(nv, i, h) for i, h in enumerate(self._handles)]


def _gpu_reading(nv: Any, index: int, h: Any) -> dict[str, Any]:
    """One GPU's counters through the ``pynvml`` module ``nv``; a counter it lacks is None."""
    return {"index": index, "util": _try(lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu),
            "mem_used": _try(lambda: nv.nvmlDeviceGetMemoryInfo(h).used),
            "mem_total": _try(lambda: nv.nvmlDeviceGetMemoryInfo(h).total),
            "temp": _try(lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            "power": _try(lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)}


def _cuda_peak() -> int | None:
    """Bytes this process's tensors have held on its CUDA device at most, when it uses one."""
    torch = sys.modules.get("torch")  # never imported here: Run stays light without it
    try:
        if torch is not None and torch.cuda.is_initialized():
            return int(torch.cuda.max_memory_allocated())
    except Exception:  # a broken driver reads as "no figure", never as a failed event
        pass
    return None


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # a counter the device does not support is "unknown", not an error
        return None


class SystemMonitor:
    """Emit a ``system`` event now and then every ``interval`` seconds until ``stop()``."""

    def __init__(self, emit: EmitFn, interval: float = 5.0) -> None:
        self._emit = emit
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gpus = GpuProbe()
        try:
            import psutil

            self._proc: Any = psutil.Process(os.getpid())
            self._psutil: Any = psutil
            psutil.cpu_percent(None)  # prime: the first call always returns 0.0
        except Exception:
            self._proc = None
            self._psutil = None

    def sample(self) -> dict[str, Any]:
        """The fields of one ``system`` event."""
        cpu = rss = None
        if self._psutil is not None:
            cpu = _try(lambda: self._psutil.cpu_percent(None))
            rss = _try(lambda: self._proc.memory_info().rss)
        out: dict[str, Any] = {"gpus": self._gpus.read(), "cpu": cpu, "rss": rss}
        peak = _cuda_peak()
        if peak is not None:
            out["cuda_max_allocated"] = peak
        return out

    def emit_once(self) -> None:
        """Emit one ``system`` event now."""
        try:
            self._emit("system", **self.sample())
        except (OSError, ValueError):
            pass  # the writer was closed under us at shutdown; nothing to report to

    def start(self) -> SystemMonitor:
        """Start the background thread (daemon: it never keeps the process alive)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="traintop-system", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        self.emit_once()
        while not self._stop.wait(self.interval):
            self.emit_once()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
