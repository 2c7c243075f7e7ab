"""The command line: every command has its arguments function and its run module, and a missing one is an error,
not a silent skip; the parser comes from the light `commands/arguments.py`, so every `--help` and argument error
imports no run module (nor torch), and `main` imports only the run module of the command it runs."""
import importlib
import json
import pkgutil
import subprocess
import sys
import types

import pytest

import laclip_lite.commands
from laclip_lite import cli
from laclip_lite.commands import arguments


def test_every_command_has_its_arguments_and_its_run_module():
    modules = {m.name for m in pkgutil.iter_modules(laclip_lite.commands.__path__)} - {"arguments"}
    assert modules == set(cli.COMMANDS) == set(arguments.ARGUMENTS)
    assert all(callable(importlib.import_module(f"laclip_lite.commands.{name}").run) for name in modules)
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    assert set(choices) == set(cli.COMMANDS)


def test_missing_command_module_fails_loudly(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {**cli.COMMANDS, "trian": "a misspelt command"})
    monkeypatch.setitem(arguments.ARGUMENTS, "trian", lambda p: None)
    with pytest.raises(ModuleNotFoundError, match="laclip_lite.commands.trian"):
        cli.build_parser()
    with pytest.raises(ModuleNotFoundError, match="laclip_lite.commands.trian"):
        cli.main(["trian"])


def test_missing_arguments_function_fails_loudly(monkeypatch):
    monkeypatch.delitem(arguments.ARGUMENTS, "grade")
    with pytest.raises(LookupError, match="'grade' .* no arguments function"):
        cli.build_parser()


def test_main_imports_only_the_command_it_runs(monkeypatch, capsys):
    imported, real, ran = [], importlib.import_module, []
    fake = types.SimpleNamespace(run=lambda args: ran.append(args.command) or 0)    # the run module, not run

    def import_module(name):
        imported.append(name)
        return fake if name.startswith("laclip_lite.commands.") else real(name)

    monkeypatch.setattr(cli.importlib, "import_module", import_module)
    for argv in (["--help"], ["--debug", "--help"], [], ["trian"], ["train", "--help"], ["--debug", "ablate", "-h"],
                 ["train", "--no-such-flag"], ["eval", "--checkpoint", "r", "--batch-size", "0"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
    assert imported == [] and ran == []
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS) and "--preset" in out     # --help, and train's --help
    assert cli.main(["--debug", "train", "--out", "x"]) == 0
    assert imported == ["laclip_lite.commands.train"] and ran == ["train"]


HEAVY = ("torch", "numpy", "PIL", "matplotlib")
# In a fresh interpreter: the modules each command line imports (heavy libraries and run modules only).
PROBE = """import json, sys
from laclip_lite import cli
seen = {}
for argv in json.loads(sys.argv[1]):
    try:
        cli.main(argv)
    except SystemExit:
        pass
    seen[" ".join(argv)] = sorted(m for m in sys.modules if m.split(".")[0] in %r
                                  or (m.startswith("laclip_lite.commands.") and m != "laclip_lite.commands.arguments"))
print(json.dumps(seen))
""" % (HEAVY,)


def heavy_imports(argvs: list[list[str]]) -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.slow
def test_help_and_argument_errors_import_no_run_module_nor_torch(tmp_path):
    argvs = [["--help"], ["train", "--help"], ["ablate", "--help"], ["train", "--no-such-flag"],
             ["grade", "nb.ipynb", "--timeout", "x"], *([name, "-h"] for name in cli.COMMANDS)]
    seen = heavy_imports(argvs)
    assert seen == {" ".join(a): [] for a in argvs}, seen
    ran = heavy_imports([["assignments", "--out", str(tmp_path), "--source", str(tmp_path / "none")]])   # runs:
    assert "laclip_lite.commands.assignments" in next(iter(ran.values()))                  # the probe sees imports


def test_train_help_names_every_preset():
    from laclip_lite.config import PRESETS
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    help_text = next(a.help for a in train._actions if a.dest == "preset")
    assert all(name in help_text for name in PRESETS), help_text
