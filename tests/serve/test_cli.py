"""The serve command's pieces and the base CLI's install hints (fast: no server, no browser)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from traintop import cli
from traintop.serve import TokenError, browse_url, choose_token, is_loopback, read_token_file, watch_command


def test_every_address_gets_a_token_and_the_url_carries_it() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "::", "10.0.0.5", "gpu-box.example.org"):
        assert not is_loopback(host)
    token = choose_token(None)  # loopback or not: any local account can reach 127.0.0.1
    assert len(token) >= 24 and token != choose_token(None)
    assert choose_token("mine") == "mine"
    assert browse_url("127.0.0.1", 8000, "t") == "http://127.0.0.1:8000/?token=t"
    assert browse_url("::1", 8000, "t") == "http://[::1]:8000/?token=t"
    assert browse_url("0.0.0.0", 8000, "t", "https://x-8000.proxy.example/") == "https://x-8000.proxy.example/?token=t"
    assert browse_url("127.0.0.1", 8000, "a b&c") == "http://127.0.0.1:8000/?token=a%20b%26c"


def test_a_token_file_open_to_others_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  from-a-file \n")
    for mode in (0o644, 0o640, 0o604, 0o620):
        path.chmod(mode)
        with pytest.raises(TokenError, match=f"token file {path} is open to other users.*chmod 600"):
            read_token_file(path)
    path.chmod(0o600)
    assert read_token_file(path) == "from-a-file"
    path.write_text("\n")
    with pytest.raises(TokenError, match="empty"):
        read_token_file(path)


def test_the_tabs_command_carries_no_token_and_execs_the_app(tmp_path: Path) -> None:
    command = watch_command(tmp_path, poll=True)
    assert command.startswith(f"exec {sys.executable} -m traintop.cli watch ") and command.endswith(" --poll")
    assert "token" not in command


def test_a_comparison_is_served_as_one_watch_of_every_run(tmp_path: Path) -> None:
    a, b = tmp_path / "a b", tmp_path / "c"
    command = watch_command([a, b], poll=False)
    assert command == f"exec {shlex.join([sys.executable, '-m', 'traintop.cli', 'watch', str(a), str(b)])}"


def test_serve_help_names_every_way_to_give_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("--token-file PATH", "TRAINTOP_SERVE_TOKEN", "chmod 600", "`ps`", "--max-tabs N",
                  "the token is required on every address"):
        assert words in text, words


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
