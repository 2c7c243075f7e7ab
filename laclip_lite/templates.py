"""Zero-shot prompt templates: named sets shipped with the kit, or your own file.

CLIP classifies an image without training a classifier: each class name is written into sentences
("a photo of a {}.") and the text tower's embedding of those sentences becomes the class's weight vector
(see `evaluate.zero_shot_classifier`). The wording matters, so CLIP averages over several templates.

A template file has one template per line; `{}` marks where the class name goes (`{c}`, as in CLIP_benchmark's
`zeroshot_classification_templates.txt`, is read as `{}`). Blank lines and lines starting with `#` are skipped.
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


def load_templates(path: str | Path) -> list[str]:
    """Read a template file: one template per line, each with `{}`; blank lines and `# comments` skipped.

    A line without `{}` raises DataError naming the file and the line number; so does a file with no template.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"template file not found: {path}")
    templates = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip().replace("{c}", "{}")
        if not text or text.startswith("#"):
            continue
        if "{}" not in text:
            raise DataError(f"{path}:{number}: template {text!r} has no '{{}}' where the class name goes")
        templates.append(text)
    if not templates:
        raise DataError(f"{path}: no templates (every line is blank or a # comment)")
    return templates


def get_templates(name_or_path: str | Path | list[str] | None = None) -> list[str]:
    """A named set (`default`, `heldout`, ...), a template file, or a list of templates (checked) -> list.

    None means the `default` set. An unknown name that is not a file raises FileNotFoundError listing the sets.
    """
    if name_or_path is None:
        name_or_path = DEFAULT
    if isinstance(name_or_path, (list, tuple)):
        bad = [t for t in name_or_path if "{}" not in t]
        if bad or not name_or_path:
            raise DataError(f"templates must be a non-empty list of strings with '{{}}'; bad: {bad!r}")
        return list(name_or_path)
    name = str(name_or_path)
    if name.startswith(CLIP_BENCHMARK_PREFIX):
        return clip_benchmark_templates(name[len(CLIP_BENCHMARK_PREFIX):])
    if name in template_sets():
        return load_templates(TEMPLATE_DIR / f"{name}.txt")
    if Path(name).is_file():
        return load_templates(name)
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
