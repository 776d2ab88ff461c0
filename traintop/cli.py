"""``traintop train | watch | serve | ctl | report | demo | runs | sample | export``.

Each subcommand's arguments and body live beside the code they drive; this module only wires
them, importing each lazily so ``traintop --help`` and ``traintop ctl`` never load torch. The base
install is the watcher; a command that needs an optional extra (``traintop[train]``) says how to
install it instead of failing on an import deep inside.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from traintop.resources import install_command

# name → (module, add-arguments function, run function, one-line help, examples)
SUBCOMMANDS: dict[str, tuple[str, str, str, str, str]] = {
    "train": ("traintop.trainer.cli", "add_train_arguments", "run_train",
              "run the headless trainer on a recipe (writes a run directory under logs/)",
              "  traintop train xtts_tiny --max-steps 200\n"
              "  traintop train configs/xtts_v2_finetune.yaml --name my-voice\n"
              "  traintop train vits_tiny --set lr=2e-4 --set batch_size=4\n"
              "  traintop train xtts_tiny --resume logs/xtts_tiny-20261121-101500"),
    "watch": ("traintop.tui.cli", "add_watch_arguments", "run_watch",
              "open the terminal app on a run directory or a folder of runs",
              "  traintop watch                 # every run under ./logs\n"
              "  traintop watch logs/my-voice-20261121-101500\n"
              "  traintop watch logs/voice-a logs/voice-b    # compare runs, term by term\n"
              "  NO_COLOR=1 traintop watch --poll logs/   # NFS / sshfs: poll instead of inotify"),
    "serve": ("traintop.serve", "add_serve_arguments", "run_serve",
              "the same app in a browser, behind a token that the printed URL carries",
              "  traintop serve                          # prints http://127.0.0.1:8000/?token=..., runs under ./logs\n"
              "  traintop serve logs/my-run --port 8080\n"
              "  traintop serve logs/voice-a logs/voice-b   # a comparison in the browser\n"
              "  traintop serve --token-file ~/.traintop-token   # a token you chose (chmod 600)\n"
              "  ssh -L 8000:localhost:8000 gpu-box      # then open the printed URL here"),
    "ctl": ("traintop.commands.ctl", "add_ctl_arguments", "run_ctl",
            "send a command to a running trainer (for scripts)",
            "  traintop ctl logs/my-run pause --wait\n"
            "  traintop ctl logs/my-run set-weight loss_mel 35 --wait 30\n"
            "  traintop ctl logs/my-run scale-lr 0.8\n"
            "  traintop ctl logs/my-run stop --wait && echo stopped"),
    "report": ("traintop.health.cli", "add_report_arguments", "run_report",
               "judge a run's health: per-term zones, alerts with fixes, a verdict",
               "  traintop report logs/my-run\n"
               "  traintop report logs/my-run --json | jq .verdict\n"
               "  traintop report logs/my-run --profile seed-six-term\n"
               "  traintop report logs/voice-a logs/voice-b --json   # compare runs\n"
               "  traintop report logs/my-run --follow --on-alert 'mail -s traintop me@example.org'"),
    "demo": ("traintop.demo", "add_demo_arguments", "run_demo",
             "train a tiny real model on synthesized speech and watch it live",
             "  traintop demo\n"
             "  traintop demo --recipe xtts_tiny\n"
             "  traintop demo --headless --steps 100"),
    "runs": ("traintop.commands.runs", "add_runs_arguments", "run_runs",
             "list the runs in a folder with status, step and speed",
             "  traintop runs\n"
             "  traintop runs /data/logs --json"),
    "sample": ("traintop.trainer.cli", "add_sample_arguments", "run_sample",
               "synthesize from a saved checkpoint alone (the same audio as in training)",
               "  traintop sample logs/my-run/checkpoints/checkpoint_1000.pth --text 'Olá, tudo bem?' --out out.wav\n"
               "  traintop sample CKPT --text 'Bom dia' --speaker-wav ref.wav --out bom-dia.wav"),
    "export": ("traintop.trainer.cli", "add_export_arguments", "run_export",
               "write a run's XTTS checkpoint as a release-style folder coqui's TTS API loads",
               "  traintop export logs/my-run --out voices/my-voice        # best checkpoint\n"
               "  traintop export logs/my-run --checkpoint 2000 --out voices/my-voice-2k\n"
               "  traintop export logs/my-lora-run --merge-lora --out voices/my-voice"),
}

# optional extra → modules it installs (checked without importing them); one line per extra
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("torch", "torchaudio", "TTS", "trainer"),
}
# command → the extra it needs; commands not listed run on the base install
COMMAND_EXTRA: dict[str, str] = {"train": "train", "demo": "train", "sample": "train", "export": "train"}


def missing_extra(command: str) -> str | None:
    """A message naming the install command when ``command``'s extra is absent, else ``None``."""
    extra = COMMAND_EXTRA.get(command)
    if extra is None:
        return None
    absent = [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return (f"traintop {command} needs the optional '{extra}' extra ({', '.join(absent)} not installed; "
            f"the base install is the watcher only). Install it with:\n    {install_command(extra)}")


def command_named(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` asks for (its first word that is one), else None (``traintop --help``)."""
    return next((a for a in argv if a in SUBCOMMANDS), None)


def build_parser(only: str | None = None, *, every: bool = True) -> argparse.ArgumentParser:
    """The argument parser; a subcommand's module is imported to add its arguments only when ``every``
    is set or it is ``only`` (``traintop --help`` and ``traintop ctl`` import no other command's module)."""
    parser = argparse.ArgumentParser(
        prog="traintop",
        description="top for TTS training runs: train headless, watch and steer from a terminal or a browser.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  traintop demo\n  traintop train xtts_tiny & traintop watch\n"
               "  traintop ctl logs/RUN pause --wait\n\nrun `traintop COMMAND --help` for a command's options.")
    from traintop import __version__

    parser.add_argument("--version", action="version", version=f"traintop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, add_fn, _run, help_text, examples) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text.capitalize() + ".",
                           epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter)
        if not every and name != only:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # never parsed here
            p.set_defaults(_command=name)
            continue
        try:
            getattr(importlib.import_module(module), add_fn)(p)
        except (ImportError, AttributeError) as exc:
            p.set_defaults(_unavailable=f"traintop {name} is not available in this installation ({exc})")
        p.set_defaults(_command=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``traintop`` console script; returns the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_named(words), every=False)
    args = parser.parse_args(words)
    if not getattr(args, "_command", None):
        parser.print_help()
        return 0
    if getattr(args, "_unavailable", None):
        print(f"traintop: {args._unavailable}", file=sys.stderr)
        return 2
    hint = missing_extra(args._command)
    if hint:
        print(f"traintop: {hint}", file=sys.stderr)
        return 3
    module, _add, run_fn, _help, _ex = SUBCOMMANDS[args._command]
    run = getattr(importlib.import_module(module), run_fn)
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("traintop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
