"""Meta input->output pairs: the rewrite examples an LLM sees in its prompt (LaCLIP, Section 3.2).

LaCLIP collects 16 pairs from each of four sources and names its rewrite files after them:

* ``chatgpt`` - a chatbot asked to rewrite web captions: vivid, one sentence, under 30 words;
* ``bard``    - a second chatbot: more florid and descriptive;
* ``mscoco``  - (alias ``coco``) two human captions of the *same* COCO image used as input and output: plain;
* ``human``   - a person editing the caption by hand: terse.

The pairs shipped here (`meta_pairs/<source>.jsonl`) were written for this kit in each source's style (they
are not the paper's). Inputs read like noisy web alt-text (CC3M). A line is either a pair
``{"input": "...", "output": "..."}`` or, as the COCO source is built, a group of captions of one scene
``{"group": "name", "captions": ["...", "...", ...]}`` from which one ordered pair is drawn (fixed per group).

What each source is, here and in the release (the two are not the same thing):

* the kit's ``human`` pairs are terse edits (the output shorter than the input); the release's human targets
  are long descriptive re-captions that add content the input does not state ("happy corgi time" ->
  "Delighted corgi stands in the hallway, looking at its owner");
* the kit's ``chatgpt`` / ``bard`` pairs imitate the two chatbots' registers; the release's were written by the
  chatbots themselves (ChatGPT, Bard) from CC3M captions;
* ``mscoco``: in both, two human captions of one COCO image (the release keeps 5 per image, 18 images).

The release's own pairs can be read from a local checkout of it (never copied into this repository): a
source spec ``name=path/to/LaCLIP`` (the checkout folder, or its ``rewrite/utils.py``) reads that source's lists
(``chatgpt_source_caption_list`` / ``chatgpt_target_caption_list``, ..., ``coco_caption_list``) with
`ast.literal_eval` (the file is parsed, never run). `laclip-lite rewrite --meta-pairs-dir PATH` does that for
every source.

Any source can be replaced by your own file: a source spec ``name=path/to/pairs.jsonl`` (or ``.tsv``) loads
that file under ``name`` (also in `RewriteConfig.sources` and `--sources`). A TSV file holds one pair per line,
``input<TAB>output``; a line with three or more fields is a caption group (captions of one image, as above); a
first line ``input<TAB>output`` (or ``source<TAB>target``) is a header and skipped; blank lines are skipped.
Fields are taken as written (no quoting): a tab inside a caption is not possible in TSV.
"""
from __future__ import annotations

import ast
import random
from dataclasses import dataclass
from pathlib import Path

from laclip_lite.constants import SOURCES, canonical_source
from laclip_lite.errors import ConfigError, DataError
from laclip_lite.rewrite.base import seed_for
from laclip_lite.utils import iter_jsonl

PAIRS_DIR = Path(__file__).parent / "meta_pairs"


@dataclass(frozen=True)
class MetaPair:
    source: str   # the caption as found (web alt-text, or one COCO caption of a group)
    target: str   # its rewrite in the source's style


def split_spec(spec: str) -> tuple[str, Path | None]:
    """"chatgpt" -> ("chatgpt", None); "coco" -> ("mscoco", None); "mine=pairs.jsonl" -> ("mine", Path)."""
    spec = spec.strip()
    if "=" in spec:
        name, path = (s.strip() for s in spec.split("=", 1))
        if not name or not path:
            raise ConfigError(f"meta-pair source {spec!r} must look like name=path/to/pairs.jsonl")
        return canonical_source(name), Path(path)
    name = canonical_source(spec)
    if name not in SOURCES:
        raise ConfigError(f"unknown meta-pair source {spec!r} (known: {', '.join(SOURCES)}, alias coco; "
                          f"or name=path/to/pairs.jsonl for your own)")
    return name, None


def canonical_sources(specs: list[str]) -> list[str]:
    """Variant names for source specs, validated; duplicates are an error (two columns with one name)."""
    names = [split_spec(s)[0] for s in specs]
    if not names:
        raise ConfigError("no meta-pair sources given (known: " + ", ".join(SOURCES) + ")")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"meta-pair source(s) given twice: {', '.join(dup)}")
    return names


RELEASE_FILE = "rewrite/utils.py"          # where the LaCLIP release keeps its meta pairs (Python lists)
RELEASE_LISTS = {"chatgpt": ("chatgpt_source_caption_list", "chatgpt_target_caption_list"),
                 "bard": ("bard_source_caption_list", "bard_target_caption_list"),
                 "human": ("human_source_caption_list", "human_target_caption_list"),
                 "mscoco": ("coco_caption_list",)}


def release_file(path: Path) -> Path | None:
    """The release's pair file for a spec path: a checkout folder (-> its rewrite/utils.py) or a .py file."""
    if path.is_dir():
        for candidate in (path / RELEASE_FILE, path / "utils.py"):
            if candidate.is_file():
                return candidate
        raise DataError(f"{path}: not a LaCLIP checkout (no {RELEASE_FILE} or utils.py with the meta-pair lists)")
    return path if path.suffix == ".py" else None


def release_pairs(name: str, path: Path) -> list[MetaPair]:
    """The LaCLIP release's meta pairs of source `name` from its `rewrite/utils.py` (parsed with ast, not run)."""

    if name not in RELEASE_LISTS:
        raise ConfigError(f"{path}: the release has pairs for {', '.join(RELEASE_LISTS)} (alias coco), not {name!r}")
    if not path.is_file():
        raise DataError(f"meta-pair file not found: {path}")
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in RELEASE_LISTS[name]:
                try:
                    found[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError as e:
                    raise DataError(f"{path}:{node.lineno}: {node.targets[0].id} is not a literal list") from e
    missing = [n for n in RELEASE_LISTS[name] if n not in found]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} (the release's meta-pair lists)")
    if name == "mscoco":
        return [_pair({"captions": group}, f"{path}:coco_caption_list[{i}]")
                for i, group in enumerate(found["coco_caption_list"])]
    src, tgt = (found[n] for n in RELEASE_LISTS[name])
    if len(src) != len(tgt):
        raise DataError(f"{path}: {len(src)} {name} source captions for {len(tgt)} targets")
    return [_pair({"input": a, "output": b}, f"{path}:{name}[{i}]") for i, (a, b) in enumerate(zip(src, tgt))]


def load_meta_pairs(spec: str) -> list[MetaPair]:
    """The pairs of one source spec (a packaged source name, name=pairs file, or name=a LaCLIP checkout)."""
    name, path = split_spec(spec)
    release = release_file(path) if path is not None else None
    if release is not None:
        return release_pairs(name, release)
    path = path or PAIRS_DIR / f"{name}.jsonl"
    pairs = [_pair(row, f"{path}:{lineno}") for lineno, row in _rows(path)]
    if not pairs:
        raise DataError(f"{path}: no meta pairs")
    return pairs


def _rows(path: Path):
    """(line number, row dict) of a JSONL or TSV pair file (TSV rows become the JSONL shapes)."""
    if not path.is_file():
        raise DataError(f"meta-pair file not found: {path}")
    if path.suffix.lower() != ".tsv":
        yield from iter_jsonl(path)
        return
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if lineno == 1 and [f.lower() for f in fields] in (["input", "output"], ["source", "target"]):
            continue
        if len(fields) < 2:
            raise DataError(f"{path}:{lineno}: expected 'input<TAB>output' (or 3+ tab-separated captions of "
                            f"one image), got {line[:80]!r}")
        yield lineno, ({"input": fields[0], "output": fields[1]} if len(fields) == 2 else {"captions": fields})


def _pair(row: dict, where: str) -> MetaPair:
    if isinstance(row.get("captions"), list):
        caps = [c.strip() for c in row["captions"] if isinstance(c, str) and c.strip()]
        if len(caps) < 2:
            raise DataError(f"{where}: a caption group needs at least 2 captions, got {len(caps)}")
        src, tgt = random.Random(seed_for("meta-group", row.get("group", ""), *caps)).sample(caps, 2)
        return MetaPair(src, tgt)
    src, tgt = row.get("input"), row.get("output")
    if not (isinstance(src, str) and src.strip() and isinstance(tgt, str) and tgt.strip()):
        raise DataError(f"{where}: expected {{\"input\": str, \"output\": str}} or {{\"captions\": [...]}}")
    return MetaPair(src.strip(), tgt.strip())


def load_groups(spec: str = "mscoco") -> list[list[str]]:
    """The caption groups of a grouped source (COCO style), for inspection in notebooks."""
    name, path = split_spec(spec)
    path = path or PAIRS_DIR / f"{name}.jsonl"
    return [r["captions"] for _, r in _rows(path) if isinstance(r.get("captions"), list)]


def meta_file_digest(spec: str) -> str:
    """A digest of the pairs a spec loads: part of the rewrite cache key, so editing a pair file re-runs."""
    return str(seed_for(*[f"{p.source}\x00{p.target}" for p in load_meta_pairs(spec)]))
