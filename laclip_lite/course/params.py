"""Notebook parameters: declared once here, written into each notebook's `parameters` cell, checked at start.

Every lesson notebook has a cell tagged `parameters` (papermill's convention) whose assignments are the
defaults, and right after it a cell that calls `lessonNN.start(globals())` (`course.common.start`), which calls
`check_parameters`. papermill puts the values given with `-p` / `-y` / `-f` in a cell of its own between the
two (tagged `injected-parameters`, source starting with `# Parameters`), so by the time the check runs, every
parameter holds its final value.

The check (unknown names, wrong values, all reported together before any work; coerced values written back):

* **names**: IPython keeps the source of every executed cell in `In`; the names the latest parameters cell
  (first line `# Notebook parameters`) and papermill's cell (`# Parameters`) assign (`ast`) must be declared, so
  `-p stpes 5` stops the run naming `stpes` (papermill only warns). Outside IPython: the namespace's values.
* **config keys** (`steps` is `train.steps`, `k_shot` is `rewrite.k_shot`, ...): the config is the one type
  system. A value is coerced to its field's type as `--set` is (`config.coerce_value`); the preset, these keys
  and `overrides` then go through `build_config` (choices, ranges, cross-field rules), its ConfigError reported
  under the parameter that set the key it names (`steps: train.steps must be >= 1, got 0`). None: the preset's.
* **lesson-only knobs** (`n_show`, `policies`, `jobs`, ...): typed by `config.coerce_value` (strict: notebook
  values are Python values, not text; a list may be written "a,b,c"), then their allowed values and ranges.

`NOTEBOOKS` is the one source of names, defaults and types: `parameters_cell` writes each notebook's parameters
cell from it (`make strip`), and a test checks that papermill reads exactly these from every committed notebook.
"""
from __future__ import annotations

import ast
import difflib
import textwrap
import typing
from dataclasses import dataclass
from typing import Any

from laclip_lite.config import ConfigError, build_config, coerce_value, key_type, parse_key_value, preset
from laclip_lite.constants import POLICIES, REWRITERS, SOURCES
from laclip_lite.data.vocab import TASKS
from laclip_lite.errors import ParameterError  # noqa: F401  (raised here; lessons import it from here)

PARAMS_MARKER = "# Notebook parameters"   # first line of every lesson's parameters cell
CELL_WIDTH = 100    # a parameters cell's comments wrap here (JupyterLab shows ~100 characters without scrolling)
PAPERMILL_MARKER = "# Parameters"         # first line of the cell papermill injects
# Names IPython (and the notebook's own imports) put in a fresh namespace: never parameters.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
OVERRIDES = "overrides"   # the knob kind of config overrides: 'key=value' strings, one 'k=v k=v' string, or a dict


@dataclass(frozen=True)
class Param:
    default: Any
    help: str                  # one line; written as the trailing comment in the parameters cell
    key: str = ""              # the config key it sets, typed and checked by the config ("" = a lesson-only knob)
    kind: Any = None           # a knob's type (list[str], list[int], OVERRIDES, ...); None = the default's type
    choices: tuple = ()        # a knob's allowed values (a str, or each item of a list), empty = any
    low: int | None = None     # a knob's smallest allowed value (int), None = no bound
    high: int | None = None    # a knob's largest allowed value (int), None = no bound
    optional: bool = False     # None is a value too (the preset's; always so when the default is None)

    @property
    def type(self) -> Any:
        return key_type(self.key) if self.key else self.kind or type(self.default)

    @property
    def takes_none(self) -> bool:
        return self.optional or self.default is None


def _common(steps: int | None, steps_help: str = "optimizer steps (None: the preset's train.steps)") -> dict:
    return {
        "device": Param("auto", '"auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...', "train.device"),
        "data": Param("shapeworld", 'data.source: "shapeworld", a LaCLIP CSV, a folder of .tar shards, a HF dataset '
                                    'folder', "data.source"),
        "preset": Param("tiny", "config preset (laclip_lite.config.PRESETS): tiny, test, vit-b16, ..."),
        "steps": Param(steps, steps_help, "train.steps", optional=True),
        "batch_size": Param(None, "images per step (None: the preset's train.batch_size)", "train.batch_size"),
        "seed": Param(0, "seeds model init, data order and text draws", "train.seed"),
        "out_dir": Param("", 'where this run writes metrics.json and figures ("": runs/notebooks/<name>)'),
        "interactive": Param(False, "True in JupyterLab for widgets; False (papermill): static figures"),
    }


_EVAL_DATASETS = Param([], "evaluation sets (eval.datasets): ImageFolder / CLIP_benchmark folders; []: ShapeWorld's "
                           "tasks (on file data: the final loss only)", "eval.datasets")
_JOBS = Param(0, "runs in parallel, cores/jobs threads each; 0: auto (2 on a CPU, 1 on CUDA)", low=0)

NOTEBOOKS: dict[str, dict[str, Param]] = {
    "01_clip_basics": {
        **_common(None),
        "preset": Param("tiny-rich", "config preset: tiny-rich (data-rich: many images, few epochs, so it learns "
                                     "shape as well as colour), tiny, test, ..."),
        "task": Param("color_shape", "zero-shot task: shape, color, color_shape, size, background", choices=TASKS),
        "templates": Param("default", "template set for zero-shot (laclip_lite/data/templates) or a file"),
        "n_show": Param(8, "images in the similarity heatmaps (2 to 32)", low=2, high=32),
    },
    "02_text_rewriting": {
        **{k: v for k, v in _common(None).items() if k != "steps"},
        "batch_size": Param(None, "captions per rewrite batch (None: rewrite.batch_size)", "rewrite.batch_size"),
        "n_captions": Param(200, "captions to rewrite and score (the first n of the training split)", low=1),
        "llm_model": Param("", "a causal LM (local folder or hub name) to rewrite with; empty: the world-aware "
                               "stand-in"),
        "bt_models": Param("", '"forward,backward" translation models for back-translation; empty: skipped'),
        "sources": Param(list(SOURCES), "meta-pair sources, one rewrite per caption each", kind=list[str],
                         choices=SOURCES),
        "k_shot": Param(3, "meta pairs per prompt (0 or more)", "rewrite.k_shot"),
        "embed": Param(True, "MiniLM cosine (faithfulness) in the quality report"),
    },
    "03_laclip_training": {
        **_common(500, "optimizer steps per run (None: the preset's); 500 shows the LaCLIP effect within the CPU "
                       "demo budget"),
        "policies": Param(list(POLICIES), "text policies to compare; policy:augment for another rewrite cache "
                                          "(e.g. laclip:eda)", kind=list[str]),
        "seeds": Param(None, "seeds per policy (None: [seed])", kind=list[int]),
        "augment": Param("auto", "rewrites laclip/mt draw from: auto (ShapeWorld: shapes; file data: the rewrites "
                                 "the data carries), shapes, eda, backtranslate, llm", choices=("auto", *REWRITERS)),
        "overrides": Param([], "config overrides, written as for the CLI's --set (a list of strings)", kind=OVERRIDES),
        "jobs": _JOBS,
        "eval_datasets": _EVAL_DATASETS,
        "nproc_per_node": Param(1, "processes per run: > 1 trains each run with torchrun (one per GPU; gloo "
                                   "processes on a CPU), one run at a time"),
    },
    "04_ablations": {
        **_common(300, "optimizer steps per run (None: the preset's); kept small so the grid fits a CPU"),
        "ablations": Param(["augment", "num_rewrites"], "which ablations: augment, num_rewrites, source, backbone, "
                                                        "text_tower (or 'all')", kind=list[str]),
        "values": Param({"augment": ["none", "eda", "shapes"], "num_rewrites": [0, 1, 4]},
                        "restrict an ablation's values, e.g. {'num_rewrites': [0, 4]}; {}: all values"),
        "policy": Param("laclip", "text policy of the augmented arms", choices=tuple(p for p in POLICIES
                                                                                     if p != "clip")),
        "seeds": Param(None, "seeds per grid point (None: [seed])", kind=list[int]),
        "metric": Param("color_shape_top1", "the metric the figures plot"),
        "overrides": Param({"data.train_size": 1500}, "config overrides for every run; the default world is small "
                           "so short runs see each image ~50 times", kind=OVERRIDES),
        "jobs": _JOBS,
        "llm_model": Param("", "causal LM for the augment value llm (empty: that value is skipped)"),
        "bt_models": Param("", '"forward,backward" for the augment value backtranslate (empty: skipped)'),
        "eval_datasets": _EVAL_DATASETS,
    },
}


# --- coercion: config keys by the config, then the lesson-only knobs ----------------------------------------
def _coerce(name: str, value: Any, p: Param) -> Any:
    """The value as its declared type, or a ConfigError starting with `name`. A config key's value is coerced
    to its field's type as `--set` is (its meaning is checked with the whole config: `_config_problem`); a
    knob's by `config.coerce_value` (strict), then its allowed values, ranges and non-empty lists."""
    typ = p.type
    if value is None and (p.takes_none or (p.key and typing.get_origin(typ) is list)):
        return None if p.takes_none else []                    # None: the preset's value / no entries
    if p.key:
        try:
            return coerce_value(p.key, value, typ)                 # as `--set` and config files are
        except ConfigError as e:
            raise ConfigError(f"{name}: {e}" + (" (or None: the preset's value)" if p.takes_none else "")) \
                from None
    if typ == OVERRIDES:
        overrides_dict(value, name)                  # the shape; keys and values are checked with the whole config
        return dict(value) if isinstance(value, dict) else value.split() if isinstance(value, str) else list(value)
    if typ is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expects a dict, got {value!r}")
        return dict(value)
    listed = typing.get_origin(typ) is list
    out = coerce_value(f"{name}:", value if not listed or isinstance(value, (str, list, tuple)) else [value], typ,
                       strict=True)
    if typ == list[str] and (not out or not all(out)):
        raise ConfigError(f"{name}: expects a non-empty list of strings (or 'a,b,c'), got {value!r}")
    bad = [v for v in (out if listed else [out]) if p.choices and v not in p.choices]
    if bad and not listed:
        raise ConfigError(f"{name}: {out!r} is not one of: {', '.join(p.choices)}")
    if bad:
        raise ConfigError(f"{name}: {', '.join(map(repr, bad))} {'is' if len(bad) == 1 else 'are'} not among the "
                          f"allowed values: {', '.join(p.choices)}")
    if (p.low is not None and out < p.low) or (p.high is not None and out > p.high):
        allowed = (f"{p.low} to {p.high}" if p.low is not None and p.high is not None else
                   f"{p.low} or more" if p.low is not None else f"{p.high} or less")
        raise ConfigError(f"{name}: {out} is out of range: allowed values are {allowed}")
    return out


def overrides_dict(overrides, name: str = OVERRIDES) -> dict:
    """The `overrides` parameter as {key: value}: a dict as it is; 'key=value' strings (a list, or one string
    separated by spaces) through `config.parse_key_value` (values parsed by the config, as for --set)."""
    if isinstance(overrides, dict):
        return dict(overrides)
    items = overrides.split() if isinstance(overrides, str) else overrides
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{name}: expects config overrides: a list of 'key=value' strings, one 'key=value ...' "
                          f"string, or a dict; got {overrides!r}")
    return dict(parse_key_value(item, f"{name}:", "train.lr=1e-3") for item in items)


def config_overrides(notebook: str, values: dict) -> dict:
    """{config key: value} the config-key parameters set (None and []: the preset's), then `overrides`."""
    keys = {p.key: values[n] for n, p in NOTEBOOKS[notebook].items() if p.key and values.get(n) not in (None, [])}
    return {**keys, **overrides_dict(values.get(OVERRIDES) or [])}


def _config_problem(notebook: str, values: dict) -> str:
    """'' when the preset, the config-key parameters and `overrides` make a valid config (`build_config`);
    else its ConfigError, under the parameter that set the key it names (`overrides` when none did)."""
    spec = NOTEBOOKS[notebook]
    try:
        preset(values["preset"])
    except ConfigError as e:
        return f"preset: {e}"
    try:
        build_config(values["preset"], config_overrides(notebook, values))
    except ConfigError as e:
        named = [n for n, p in spec.items() if p.key and values.get(n) not in (None, []) and p.key in str(e)]
        return f"{' / '.join(named) or (OVERRIDES if OVERRIDES in spec else 'preset')}: {e}"
    return ""


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
        except ConfigError as e:
            problems.append(str(e))
    if all(n in values for n, p in spec.items() if p.key or n in ("preset", OVERRIDES)):
        problems += [problem for problem in [_config_problem(notebook, values)] if problem]
    if problems:
        raise ParameterError(f"notebook {notebook}: bad parameters (read from {where}):\n  - "
                             + "\n  - ".join(problems) + f"\nknown parameters: {', '.join(spec)}")
    return values


def defaults(notebook: str) -> dict:
    return {name: p.default for name, p in NOTEBOOKS[notebook].items()}


def annotation(p: Param) -> str:
    """The type written for `p` in the parameters cell (what `papermill --help-notebook` shows)."""
    typ = type(p.default) if p.type == OVERRIDES else typing.get_origin(p.type) or p.type
    return f"Optional[{typ.__name__}]" if p.takes_none else typ.__name__


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
