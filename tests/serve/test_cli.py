"""The serve command's pieces and the base CLI's install hints (fast: no server, no browser)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from traintop import cli
from traintop.serve import browse_url, choose_token, is_loopback


def test_loopback_needs_no_token_and_anything_else_gets_one() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback(host) and choose_token(host, None) is None
    for host in ("0.0.0.0", "::", "10.0.0.5", "gpu-box.example.org"):
        assert not is_loopback(host)
        token = choose_token(host, None)
        assert token and len(token) >= 24 and token != choose_token(host, None)
    assert choose_token("127.0.0.1", "mine") == "mine"  # a given token is required even on loopback
    assert browse_url("127.0.0.1", 8000, None) == "http://127.0.0.1:8000/"
    assert browse_url("::1", 8000, "t") == "http://[::1]:8000/?token=t"
    assert browse_url("0.0.0.0", 8000, "t", "https://x-8000.proxy.example/") == "https://x-8000.proxy.example/?token=t"


def test_serve_module_is_light_at_import() -> None:
    probe = ("import sys, traintop.cli, traintop.serve; traintop.cli.build_parser(); "
             "print(sorted(m for m in ('aiohttp', 'textual_serve', 'textual', 'torch', 'TTS') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_command_without_its_extra_prints_the_install_command(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.EXTRA_MODULES, "train", ("torch", "traintop_no_such_module_here"))
    for argv in (["train", "xtts_tiny"], ["demo", "--headless"], ["sample", "c.pth", "--text", "t", "--out", "o.wav"]):
        assert cli.main(argv) == 3
        err = capsys.readouterr().err
        assert f"{sys.executable} -m pip install 'traintop[train]'" in err
        assert "traintop_no_such_module_here" in err and f"traintop {argv[0]} needs" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--help"])
    assert exc.value.code == 0
