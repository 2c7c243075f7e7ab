"""The command line: every command module is registered, and a missing one is an error, not a silent skip."""
import pkgutil

import pytest

import laclip_lite.commands
from laclip_lite import cli


def test_every_command_module_is_registered():
    modules = {m.name for m in pkgutil.iter_modules(laclip_lite.commands.__path__)}
    assert modules == set(cli.COMMANDS)
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    assert set(choices) == set(cli.COMMANDS)


def test_missing_command_module_fails_loudly(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "trian"])
    with pytest.raises(ModuleNotFoundError, match="laclip_lite.commands.trian"):
        cli.build_parser()


def test_train_help_names_every_preset():
    from laclip_lite.config import PRESETS
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    help_text = next(a.help for a in train._actions if a.dest == "preset")
    assert all(name in help_text for name in PRESETS), help_text
