"""The command line: every command module is registered, and a missing one is an error, not a silent skip; `main`
imports only the command it runs, so `laclip-lite --help` imports no command module (nor torch)."""
import importlib
import pkgutil
import subprocess
import sys

import pytest

import laclip_lite.commands
from laclip_lite import cli


def test_every_command_module_is_registered():
    modules = {m.name for m in pkgutil.iter_modules(laclip_lite.commands.__path__)}
    assert modules == set(cli.COMMANDS)
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    assert set(choices) == set(cli.COMMANDS)


def test_missing_command_module_fails_loudly(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {**cli.COMMANDS, "trian": "a misspelt command"})
    with pytest.raises(ModuleNotFoundError, match="laclip_lite.commands.trian"):
        cli.build_parser()
    with pytest.raises(ModuleNotFoundError, match="laclip_lite.commands.trian"):
        cli.main(["trian"])


def test_main_imports_only_the_command_it_runs(monkeypatch, capsys):
    imported, real = [], importlib.import_module
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: imported.append(name) or real(name))
    for argv in (["--help"], ["--debug", "--help"], [], ["trian"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
    assert imported == []
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS)                     # --help lists every command
    with pytest.raises(SystemExit):
        cli.main(["--debug", "train", "--help"])
    assert imported == ["laclip_lite.commands.train"]
    assert "--preset" in capsys.readouterr().out


@pytest.mark.slow
def test_help_imports_no_command_module_nor_torch():
    code = ("import sys; from laclip_lite import cli; cli.build_parser([]).format_help(); print(sorted(m for m in "
            "sys.modules if m.split('.')[0] == 'torch' or m.startswith('laclip_lite.commands')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_train_help_names_every_preset():
    from laclip_lite.config import PRESETS
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    help_text = next(a.help for a in train._actions if a.dest == "preset")
    assert all(name in help_text for name in PRESETS), help_text
