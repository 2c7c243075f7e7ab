"""docs/architecture.md stays true: it names every module of the package, and its code imports resolve."""
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "laclip_lite"


def _module_map() -> set[str]:
    """The paths listed in the doc's "## Modules" code block: the first word of each entry line."""
    section = DOC.read_text(encoding="utf-8").split("## Modules", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return {m.group(1) for m in re.finditer(r"^(\S+\.py)\s", block, re.M)}


def test_every_module_is_in_the_architecture_doc():
    on_disk = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    listed = _module_map()
    assert sorted(on_disk - listed) == [], "modules missing from docs/architecture.md (add one line each)"
    assert sorted(listed - on_disk) == [], "docs/architecture.md names modules that do not exist"


def test_the_docs_imports_resolve():
    """Every `from laclip_lite... import a, b` line in the doc's code blocks names things that exist."""
    text = DOC.read_text(encoding="utf-8")
    lines = re.findall(r"^from (laclip_lite[\w.]*) import ([\w, ]+)", text, re.M)
    assert len(lines) >= 8
    for module, names in lines:
        mod = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(mod, name), f"docs/architecture.md: {module} has no {name}"
