"""Strip notebooks for committing: no outputs, no execution counts, no widget state; the kit's metadata kept.

    python -m laclip_lite.course.strip notebooks/*.ipynb          # rewrite them stripped (what `make strip` runs)
    python -m laclip_lite.course.strip --check notebooks/*.ipynb  # exit 1 naming every notebook that is not

The lessons are edited as notebooks (in JupyterLab); this is the one step between saving and committing. The
notebook metadata becomes exactly the kernelspec `python3` and language_info `python` (what papermill and the
tests expect); cell metadata is kept except JupyterLab's execution timings, so the `parameters`, `exercise` and
`answer` tags and nbgrader's cell roles survive. A lesson's `parameters` cell is rewritten from its declarations
(`course.params.parameters_cell`), so an edited default or help text goes in params.py, not in the cell.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

from laclip_lite.course.params import NOTEBOOKS, parameters_cell

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
LANGUAGE_INFO = {"name": "python"}
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled")   # set by JupyterLab as you work


def strip(nb) -> nbformat.NotebookNode:
    """The notebook without outputs, execution counts, widget state or run-time metadata (a copy)."""
    nb = copy.deepcopy(nb)
    kept = {k: v for k, v in nb.metadata.items() if k not in ("kernelspec", "language_info", "widgets", "papermill")}
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO), **kept}
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        cell.metadata.pop("papermill", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        elif "attachments" in cell and not cell.attachments:
            del cell["attachments"]
    return nb


def generated(nb, name: str) -> nbformat.NotebookNode:
    """`nb` with its `parameters` cell written from params.py's declarations when `name` is a lesson."""
    if name in NOTEBOOKS:
        for cell in nb.cells:
            if "parameters" in cell.metadata.get("tags", []):
                cell.source = parameters_cell(name)
    return nb


def is_stripped(path: str | Path) -> bool:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    return text == _render(generated(strip(nbformat.reads(text, as_version=4)), path.stem))


def _render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m laclip_lite.course.strip", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="notebook files")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any is not stripped")
    args = parser.parse_args(argv)
    dirty = []
    for name in args.notebooks:
        path = Path(name)
        if args.check:
            if not is_stripped(path):
                dirty.append(str(path))
            continue
        text = _render(generated(strip(nbformat.read(path, as_version=4)), path.stem))
        if text != path.read_text(encoding="utf-8"):
            path.write_text(text, encoding="utf-8")
            print(f"stripped {path}")
    if dirty:
        print("not stripped (run `make strip`): " + ", ".join(dirty), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
