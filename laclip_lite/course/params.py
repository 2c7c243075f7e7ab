"""Notebook parameters: declared once here, written into each notebook's `parameters` cell, checked at start.

Every lesson notebook has a cell tagged `parameters` (papermill's convention) whose assignments are the
defaults, and right after it a cell that calls `lessonNN.start(globals())` (`course.common.start`), which calls
`check_parameters`. papermill puts the values given with `-p` / `-y` / `-f` in a cell of its own between the
two (tagged `injected-parameters`, source starting with `# Parameters`), so by the time the check runs, every
parameter holds its final value.

How the check finds a typo or a wrong type:

* **unknown names**: IPython keeps the source of every executed cell in `In`. The check reads the latest
  parameters cell (first line `# Notebook parameters`) and the latest papermill cell (first line
  `# Parameters`), collects the names they assign (with `ast`) and compares them with the declared ones.
  `papermill ... -p stpes 5` therefore stops the run naming `stpes` (papermill itself only warns). Outside
  IPython (no `In`) it falls back to the plain values in the namespace.
* **types**: every declared parameter's value is coerced to its kind (`int`, `float`, `bool`, `str`,
  optional int, a list of ints or strings, config overrides); a value that does not fit stops the run naming
  the parameter, the kind it expects and what it got. Coerced values are written back into the namespace.

All problems are reported together, in the first cell after the parameters, before any work starts.

The declarations (`NOTEBOOKS`) are the one source of truth for names, defaults and kinds: `parameters_cell`
writes a fresh parameters cell from them (paste it into a notebook after adding a parameter), and a test checks
that papermill reads exactly these names, defaults and types from every committed notebook.
"""
from __future__ import annotations

import ast
import difflib
import textwrap
from dataclasses import dataclass
from typing import Any

from laclip_lite.config import ConfigError, coerce_value
from laclip_lite.constants import POLICIES, REWRITERS, SOURCES
from laclip_lite.data.vocab import TASKS
from laclip_lite.errors import ParameterError  # noqa: F401  (raised here; lessons import it from here)

PARAMS_MARKER = "# Notebook parameters"   # first line of every lesson's parameters cell
CELL_WIDTH = 100    # a parameters cell's comments wrap here (JupyterLab shows ~100 characters without scrolling)
PAPERMILL_MARKER = "# Parameters"         # first line of the cell papermill injects
# Names IPython (and the notebook's own imports) put in a fresh namespace: never parameters.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


@dataclass(frozen=True)
class Param:
    default: Any
    kind: str                  # see KINDS
    help: str                  # one line; written as the trailing comment in the parameters cell
    choices: tuple = ()        # allowed values (str and strs kinds), empty = any
    low: int | None = None     # smallest allowed value (int kinds), None = no bound
    high: int | None = None    # largest allowed value (int kinds), None = no bound


KINDS = {
    "str": "a string",
    "int": "an int",
    "float": "a number",
    "bool": "a bool (True/False)",
    "int?": "an int or None",
    "ints?": "a list of ints (or '0,1,2', or None)",
    "strs": "a list of strings (or 'a,b,c')",
    "overrides": "config overrides: a list of 'key=value' strings, one 'key=value ...' string, or a dict",
    "dict": "a dict",
    "paths": "a list of paths or dataset specs (or 'a,b'; [] for none)",
}


def _common(steps: int | None, steps_help: str = "optimizer steps (None: the preset's train.steps)") -> dict:
    return {
        "device": Param("auto", "str", '"auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...'),
        "data": Param("shapeworld", "str", 'data.source: "shapeworld", a LaCLIP CSV, a folder of .tar shards, '
                                            'a HF dataset folder'),
        "preset": Param("tiny", "str", "config preset (laclip_lite.config.PRESETS): tiny, test, vit-b16, ..."),
        "steps": Param(steps, "int?", steps_help, low=1),
        "batch_size": Param(None, "int?", "images per step (None: the preset's train.batch_size)", low=1),
        "seed": Param(0, "int", "seeds model init, data order and text draws"),
        "out_dir": Param("", "str", 'where this run writes metrics.json and figures ("": runs/notebooks/<name>)'),
        "interactive": Param(False, "bool", "True in JupyterLab for widgets; False (papermill): static figures"),
    }



NOTEBOOKS: dict[str, dict[str, Param]] = {
    "01_clip_basics": {
        **_common(None),
        "preset": Param("tiny-rich", "str", "config preset: tiny-rich (data-rich: many images, few epochs, so it "
                                            "learns shape as well as colour), tiny, test, ..."),
        "task": Param("color_shape", "str", "zero-shot task: shape, color, color_shape, size, background",
                      TASKS),
        "templates": Param("default", "str", "template set for zero-shot (laclip_lite/data/templates) or a file"),
        "n_show": Param(8, "int", "images in the similarity heatmaps (2 to 32)", low=2, high=32),
    },
    "02_text_rewriting": {
        **{k: v for k, v in _common(None).items() if k != "steps"},
        "batch_size": Param(None, "int?", "captions per rewrite batch (None: rewrite.batch_size)", low=1),
        "n_captions": Param(200, "int", "captions to rewrite and score (the first n of the training split)", low=1),
        "llm_model": Param("", "str", "a causal LM (local folder or hub name) to rewrite with; empty: the "
                                      "world-aware stand-in"),
        "bt_models": Param("", "str", '"forward,backward" translation models for back-translation; empty: skipped'),
        "sources": Param(list(SOURCES), "strs", "meta-pair sources, one rewrite per caption each", SOURCES),
        "k_shot": Param(3, "int", "meta pairs per prompt (0 or more)", low=0),
        "embed": Param(True, "bool", "MiniLM cosine (faithfulness) in the quality report"),
    },
    "03_laclip_training": {
        **_common(500, "optimizer steps per run (None: the preset's); 500 shows the LaCLIP effect within the "
                       "CPU demo budget"),
        "policies": Param(list(POLICIES), "strs", "text policies to compare; policy:augment for "
                                                            "another rewrite cache (e.g. laclip:eda)"),
        "seeds": Param(None, "ints?", "seeds per policy (None: [seed])"),
        "augment": Param("auto", "str", "rewrites laclip/mt draw from: auto (ShapeWorld: shapes; file data: "
                                        "the rewrites the data carries), shapes, eda, backtranslate, llm",
                         ("auto", *REWRITERS)),
        "overrides": Param([], "overrides", "config overrides, written as for the CLI's --set (a list of strings)"),
        "jobs": Param(0, "int", "runs in parallel, cores/jobs threads each; 0: auto (2 on a CPU, 1 on CUDA)", low=0),
        "eval_datasets": Param([], "paths", "evaluation sets (eval.datasets): ImageFolder / CLIP_benchmark folders; "
                                            "[]: ShapeWorld's tasks (on file data: the final loss only)"),
        "nproc_per_node": Param(1, "int", "processes per run: > 1 trains each run with torchrun (one per GPU; gloo "
                                          "processes on a CPU), one run at a time"),
    },
    "04_ablations": {
        **_common(300, "optimizer steps per run (None: the preset's); kept small so the grid fits a CPU"),
        "ablations": Param(["augment", "num_rewrites"], "strs", "which ablations: augment, num_rewrites, "
                                                                "source, backbone, text_tower (or 'all')"),
        "values": Param({"augment": ["none", "eda", "shapes"], "num_rewrites": [0, 1, 4]}, "dict",
                        "restrict an ablation's values, e.g. {'num_rewrites': [0, 4]}; {}: all values"),
        "policy": Param("laclip", "str", "text policy of the augmented arms",
                        tuple(p for p in POLICIES if p != "clip")),
        "seeds": Param(None, "ints?", "seeds per grid point (None: [seed])"),
        "metric": Param("color_shape_top1", "str", "the metric the figures plot"),
        "overrides": Param({"data.train_size": 1500}, "overrides", "config overrides for every run; the default "
                           "world is small so short runs see each image ~50 times"),
        "jobs": Param(0, "int", "runs in parallel, cores/jobs threads each; 0: auto (2 on a CPU, 1 on CUDA)", low=0),
        "llm_model": Param("", "str", "causal LM for the augment value llm (empty: that value is skipped)"),
        "bt_models": Param("", "str", '"forward,backward" for the augment value backtranslate (empty: skipped)'),
        "eval_datasets": Param([], "paths", "evaluation sets (eval.datasets): ImageFolder / CLIP_benchmark folders; "
                                            "[]: ShapeWorld's tasks (on file data: the final loss only)"),
    },
}


# --- coercion: the types through config.coerce_value (the kit's one coercer), then the lesson-only knobs -----
_TYPES = {"int": int, "int?": int, "float": float, "bool": bool, "str": str, "ints?": list[int], "strs": list[str]}


def _coerce(name: str, value: Any, p: Param) -> Any:
    """The value as its declared kind, or raise ValueError with a reason (the caller adds the name). The type is
    checked by `config.coerce_value` (strict: a notebook's values are Python values, not text; a list may be
    written "a,b,c"); what is left here is what only a lesson parameter has: None for "no value", allowed
    choices and ranges, non-empty lists, and the shapes of overrides, paths and dicts."""
    kind = p.kind
    if kind in ("int?", "ints?") and value is None:
        return None
    if kind in _TYPES:
        given = _as_list(value) if kind in ("ints?", "strs") else value
        try:
            out = coerce_value(name, given, _TYPES[kind], strict=kind != "ints?")   # "0,1,2" items are text
        except ConfigError:
            raise ValueError(_expects(p, value)) from None
        if kind in ("int", "int?"):
            return _in_range(out, p)
        if kind == "str" and p.choices and out not in p.choices:
            raise ValueError(f"{out!r} is not one of: {', '.join(p.choices)}")
        if kind == "strs":
            if not out or not all(out):
                raise ValueError(_expects(p, value))
            bad = [v for v in out if p.choices and v not in p.choices]
            if bad:
                raise ValueError(f"{', '.join(map(repr, bad))} {'is' if len(bad) == 1 else 'are'} not among the "
                                 f"allowed values: {', '.join(p.choices)}")
        return out
    if kind == "overrides":
        if isinstance(value, dict):
            return dict(value)
        items = value.split() if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and "=" in v for v in items):
            raise ValueError(_expects(p, value))
        return list(items)
    if kind == "paths":
        items = _as_list(value) if value not in (None, "") else []
        if not all(isinstance(v, (str, dict)) and v for v in items):
            raise ValueError(_expects(p, value))
        return items
    if kind == "dict":
        if not isinstance(value, dict):
            raise ValueError(_expects(p, value))
        return dict(value)
    raise ValueError(f"unknown parameter kind {kind!r}")


def _in_range(value: int, p: Param) -> int:
    if (p.low is not None and value < p.low) or (p.high is not None and value > p.high):
        allowed = (f"{p.low} to {p.high}" if p.low is not None and p.high is not None else
                   f"{p.low} or more" if p.low is not None else f"{p.high} or less")
        raise ValueError(f"{value} is out of range: allowed values are {allowed}")
    return value


def _as_list(value: Any) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _expects(p: Param, value: Any) -> str:
    return f"expects {KINDS[p.kind]}, got {value!r} ({type(value).__name__})"


# --- finding the names a notebook assigned ------------------------------------------------------------
def assigned_names(source: str) -> list[str]:
    """Names a cell's source assigns at top level (`a = 1`, `a: int = 1`, `a = b = 2`, `a, b = 1, 2`)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []

    def targets(node):
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                targets(elt)

    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                targets(t)
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            targets(stmt.target)
    return names


def _given_names(namespace: dict) -> tuple[list[str], str]:
    """The names the parameters cell and papermill's cell assigned, and where they were read from."""
    history = namespace.get("In")
    if isinstance(history, list):
        cells = {}
        for source in history:                       # the latest of each kind wins (cells may be re-run)
            first = source.lstrip().split("\n", 1)[0].strip() if isinstance(source, str) else ""
            if first.startswith(PARAMS_MARKER):
                cells["parameters"] = source
            elif first == PAPERMILL_MARKER:
                cells["injected"] = source
        if cells:
            return [n for src in cells.values() for n in assigned_names(src)], "the parameters cells"
    plain = (str, int, float, bool, list, dict, tuple, type(None))
    return [n for n, v in namespace.items()
            if not n.startswith("_") and n not in _IPYTHON_NAMES and isinstance(v, plain)], "the namespace"


def run_by_papermill(namespace: dict) -> bool:
    """True when papermill injected parameters (a headless run): progress bars would only be saved at 0%."""
    history = namespace.get("In")
    return isinstance(history, list) and any(
        isinstance(src, str) and src.lstrip().split("\n", 1)[0].strip() == PAPERMILL_MARKER for src in history)


# --- the check ----------------------------------------------------------------------------------------
def check_parameters(notebook: str, namespace: dict) -> dict:
    """Check and coerce a notebook's parameters in `namespace` (its `globals()`); -> {name: value}.

    Raises ParameterError listing every unknown name (with close matches) and every value of the wrong
    type. On success the coerced values are written back into `namespace`.
    """
    given, where = _given_names(namespace)
    values = _validate(notebook, given, namespace, where)
    namespace.update(values)
    return values


def check_values(notebook: str, values: dict) -> dict:
    """The same check for a plain {name: value} dict (what a sweep passes to papermill), before any kernel
    starts: unknown names and wrong types. -> the coerced values (only the names given)."""
    spec = _spec(notebook)
    namespace = {**{name: p.default for name, p in spec.items()}, **values}
    out = _validate(notebook, list(values), namespace, "the given values")
    return {n: out[n] for n in values}


def _spec(notebook: str) -> dict[str, Param]:
    if notebook not in NOTEBOOKS:
        raise ParameterError(f"no parameters declared for notebook {notebook!r} (known: {', '.join(NOTEBOOKS)})")
    return NOTEBOOKS[notebook]


def _validate(notebook: str, given: list[str], namespace: dict, where: str) -> dict:
    spec = _spec(notebook)
    problems = []
    for name in dict.fromkeys(given):
        if name not in spec:
            close = difflib.get_close_matches(name, list(spec), n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            problems.append(f"{name}: unknown parameter{hint}")
    values = {}
    for name, p in spec.items():
        if name not in namespace:
            problems.append(f"{name}: not defined (the parameters cell must assign it; default {p.default!r})")
            continue
        try:
            values[name] = _coerce(name, namespace[name], p)
        except ValueError as e:
            problems.append(f"{name}: {e}")
    if problems:
        raise ParameterError(f"notebook {notebook}: bad parameters (read from {where}):\n  - "
                             + "\n  - ".join(problems) + f"\nknown parameters: {', '.join(spec)}")
    return values


def defaults(notebook: str) -> dict:
    return {name: p.default for name, p in NOTEBOOKS[notebook].items()}


# The annotation written for each kind in the parameters cell (what `papermill --help-notebook` shows).
ANNOTATIONS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "int?": "Optional[int]",
               "ints?": "Optional[list]", "strs": "list", "overrides": "list", "dict": "dict",
               "paths": "list"}


def annotation(p: Param) -> str:
    """The type written for `p` in the parameters cell: its kind's, or `dict` for overrides given as a dict."""
    return "dict" if p.kind == "overrides" and isinstance(p.default, dict) else ANNOTATIONS[p.kind]


def parameters_cell(notebook: str) -> str:
    """The source of a notebook's parameters cell: one annotated, commented assignment per parameter."""
    spec = NOTEBOOKS[notebook]
    assigns = {n: f"{n}: {annotation(p)} = {p.default!r}" for n, p in spec.items()}
    width = min(48, max(len(a) for a in assigns.values()))
    lines = [f"{PARAMS_MARKER} (papermill: -p NAME VALUE; checked by the next cell)"]
    if any("Optional" in a for a in assigns.values()):
        lines += ["from typing import Optional", ""]
    for name, p in spec.items():
        if "=" in p.help or "=" in repr(p.default):
            raise ValueError(f"{notebook}.{name}: no '=' in a default or help text (papermill's parser skips the line)")
        head = assigns[name].ljust(width)
        chunks = textwrap.wrap(p.help, max(CELL_WIDTH - len(head) - 4, 30), break_on_hyphens=False)
        lines += [(head if i == 0 else " " * len(head)) + f"  # {c}" for i, c in enumerate(chunks)]
    return "\n".join(lines)
