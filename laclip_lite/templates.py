"""Zero-shot prompt templates: named sets shipped with the kit, or your own file.

CLIP classifies an image without training a classifier: each class name is written into sentences
("a photo of a {}.") and the text tower's embedding of those sentences becomes the class's weight vector
(see `metrics.zero_shot_classifier`). The wording matters, so CLIP averages over several templates.

A template file is text, one template per line (blank lines and `#` comments skipped), or JSON: a list (the LaCLIP
release's `imagenet_templates.json`) or CLIP_benchmark's `{dataset: [templates]}` (`file.json#dataset` picks a key).
Each template holds exactly one `{}` where the class name goes (`{c}`, as in CLIP_benchmark, is read as `{}`).
The named sets live in `laclip_lite/data/templates/<name>.txt`:

* `default`  - the kit's CLIP-style set for ShapeWorld ("a photo of a {}.", "a drawing of a {}.", ...).
* `photo`    - photography phrasings after CLIP's ImageNet list ("a blurry photo of the {}.").
* `art`      - media the training captions never mention ("a painting of a {}.", "an origami {}.").
* `spoken`   - a person describing the picture ("i can see a {}.").
* `heldout`  - written once and **never tuned against**: no model, hyper-parameter or template choice may be
               made by its score. It is the honest estimate of accuracy under phrasings nobody optimised for.
* `bare`     - the class name alone: the no-prompt-engineering baseline.

None of the sets reads like ShapeWorld's training captions (web alt-text: "red circle stock photo vector
illustration"), and none uses a word of the ShapeWorld lexicon that names an attribute value, so no template
leans towards one class of a task.
"""
from __future__ import annotations

from pathlib import Path

from laclip_lite.errors import DataError

TEMPLATE_DIR = Path(__file__).parent / "data" / "templates"
DEFAULT = "default"
HELDOUT = "heldout"


def template_sets() -> list[str]:
    """Names of the template sets shipped with the kit."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.txt"))


def load_templates(path: str | Path, dataset: str = "") -> list[str]:
    """Read a template file -> templates with `{}` where the class name goes (`{c}` is read as `{}`).

    * text: one template per line; blank lines and `# comments` skipped;
    * JSON: a list of templates (the LaCLIP release's `imagenet_templates.json`), or CLIP_benchmark's
      `{dataset: [templates]}` (`dataset` picks the key; a file with one key needs none).

    A template with no placeholder, or with more than one, raises DataError naming the file and the line (JSON: the
    line of that entry); so does a file with no template, or a JSON file of another shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"template file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        entries = _json_templates(path, text, dataset)
    else:
        entries = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)
                   if line.strip() and not line.strip().startswith("#")]
    templates = [_checked(path, number, t) for number, t in entries]
    if not templates:
        raise DataError(f"{path}: no templates (every line is blank or a # comment)")
    return templates


def _checked(path: Path, number: int, template: str) -> str:
    text = template.replace("{c}", "{}")
    n = text.count("{}")
    if n != 1:
        what = "no '{}' where the class name goes" if n == 0 else f"{n} placeholders '{{}}' (one class name each)"
        raise DataError(f"{path}:{number}: template {template!r} has {what}")
    return text


def _json_templates(path: Path, text: str, dataset: str) -> list[tuple[int, str]]:
    """(line number, template) of a JSON template file: a list, or {dataset: [templates]}."""
    import json

    try:
        data = json.loads(text)
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict):
        if dataset and dataset in data:
            data = data[dataset]
        elif len(data) == 1 and not dataset:
            data = next(iter(data.values()))
        else:
            want = f"no key {dataset!r}" if dataset else "several datasets"
            raise DataError(f"{path}: {want} (keys: {', '.join(sorted(data))[:300]}); name the dataset key "
                            "(e.g. templates: path.json#imagenet1k)")
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise DataError(f"{path}: a JSON template file must be a list of strings or {{dataset: [strings]}}")
    lines = text.splitlines()
    out, line = [], 0
    for t in data:                                 # the line each entry sits on, for the error message
        needle = json.dumps(t)[1:-1]
        line = next((i for i in range(line, len(lines)) if needle in lines[i]), line)
        out.append((line + 1, t))
    return out


def get_templates(name_or_path: str | Path | list[str] | None = None) -> list[str]:
    """A named set (`default`, `heldout`, ...), a template file, or a list of templates (checked) -> list.

    None means the `default` set. An unknown name that is not a file raises FileNotFoundError listing the sets.
    """
    if name_or_path is None:
        name_or_path = DEFAULT
    if isinstance(name_or_path, (list, tuple)):
        bad = [t for t in name_or_path if str(t).replace("{c}", "{}").count("{}") != 1]
        if bad or not name_or_path:
            raise DataError(f"templates must be a non-empty list of strings with one '{{}}' each; bad: {bad!r}")
        return [str(t).replace("{c}", "{}") for t in name_or_path]
    name = str(name_or_path)
    if name.startswith(CLIP_BENCHMARK_PREFIX):
        return clip_benchmark_templates(name[len(CLIP_BENCHMARK_PREFIX):])
    if name in template_sets():
        return load_templates(TEMPLATE_DIR / f"{name}.txt")
    if Path(name).is_file():
        return load_templates(name)
    file, _, dataset = name.rpartition("#")          # "templates.json#imagenet1k": a CLIP_benchmark file's key
    if file and Path(file).is_file():
        return load_templates(file, dataset)
    raise FileNotFoundError(f"templates {name!r} is neither a named set ({', '.join(template_sets())}) "
                            f"nor an existing file")


CLIP_BENCHMARK_PREFIX = "clip_benchmark:"       # templates "clip_benchmark:imagenet1k" -> the installed package's


def clip_benchmark_templates(dataset: str, language: str = "en") -> list[str]:
    """The zero-shot templates CLIP_benchmark uses for `dataset` (e.g. imagenet1k: CLIP's 80 ImageNet templates),
    read from the installed `clip-benchmark` package's `datasets/<language>_zeroshot_classification_templates.json`
    (the package is not imported, only located; `pip install clip-benchmark`). CLIP_benchmark's `wds/` and `vtab/`
    prefixes are dropped. A missing package, file or dataset name raises one line saying which."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("clip_benchmark")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"templates {CLIP_BENCHMARK_PREFIX}{dataset}: the clip-benchmark package is not "
                                "installed (pip install clip-benchmark), or give a template file")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets"
    path = folder / f"{language}_zeroshot_classification_templates.json"
    if not path.is_file():
        raise FileNotFoundError(f"templates {CLIP_BENCHMARK_PREFIX}{dataset}: no {path.name} in the installed "
                                f"clip-benchmark ({path.parent})")
    table = json.loads(path.read_text(encoding="utf-8"))
    key = dataset
    for prefix in ("wds/", "wds_", "vtab/"):
        key = key[len(prefix):] if key.startswith(prefix) else key
    if key not in table:
        raise DataError(f"{path}: no templates for dataset {dataset!r} (it has: {', '.join(sorted(table))})")
    templates = [str(t).replace("{c}", "{}") for t in table[key]]
    return get_templates(templates)


def fill(template: str, classname: str) -> str:
    """Put a class name into a template ("a photo of a {}." + "red circle" -> "a photo of a red circle.")."""
    return template.replace("{}", classname)
