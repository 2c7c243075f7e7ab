"""Step 1 of the training-data path: which texts each training sample has, and where they come from.

`prepare_rewrites(cfg)` -> `data.dataset.Rewrites` (captions, variants in use, where from, census, BPE corpus),
handed to the tokenizer (step 2) and to `data.dataset.get_train_data` (step 3). It is the only place that runs
the rewrite job for training; the data layer never imports `rewrite/`.

* ShapeWorld (the embedded default): rewrites come from the rewrite cache (`data.augment` picks the rewriter;
  the cache is made once and shared by every run with the same captions), or `data.rewrites_dir`.
* Files (LaCLIP CSV + rewrite files, webdataset shards, a Hugging Face dataset): a `clip` run reads the original
  captions only; `laclip` / `mt` use `data.rewrites_dir` when set, else the rewrites shipped with the data
  (readers' one rule: by CSV row, tar sample key, HF row), else (CSV) the rewrite job's cache for
  `data.augment`, else stop before training naming the source and the ways to get rewrites (`_file_rewrites`).

No silent CLIP under another name: before step 0 a `laclip` / `mt` run with no rewrite in use stops, and so does
one where more than `data.max_identical` of a variant's rewrites equal their caption (`rewrite_census`: the
stand-in on captions outside ShapeWorld copies every caption). A rewrite folder made from other captions (the CSV
edited since) stops naming the first row that differs.

`data.sources` and `data.num_rewrites` select which rewrites take part, so the paper's "meta-pair source" and
"number of augmented texts" ablations are one parameter each.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from laclip_lite.config import Config
from laclip_lite.constants import SOURCES, canonical_source
from laclip_lite.data import readers
from laclip_lite.data.dataset import Rewrites, shapeworld_split, source_kind
from laclip_lite.errors import DataError
from laclip_lite.rewrite.job import job_settings, load_rewrites, rewrite_captions
from laclip_lite.utils import cache_dir, stable_hash


def prepare_rewrites(cfg: Config, rank: int = 0, world_size: int = 1) -> Rewrites:
    """Every training sample's texts and their origin, checked (rewrites in use, identical share, made from these
    captions) before step 0. May run the rewrite job (ShapeWorld; `eda` / `shapes` on a CSV) into its cache."""
    if source_kind(cfg) == "shapeworld":
        return _shapeworld_rewrites(cfg)
    return _file_rewrites(cfg, rank, world_size)


def rewrite_cache_dir(cfg: Config, captions: list[str]) -> Path:
    """The cache folder of (captions, rewriter settings): `data.rewrites_dir` or one under the kit's cache."""
    if cfg.data.rewrites_dir:
        return Path(cfg.data.rewrites_dir)
    rcfg = rewrite_config(cfg)
    return cache_dir() / "rewrites" / f"{rcfg.rewriter}-{stable_hash(captions, vars(rcfg))}"


def rewrite_config(cfg: Config):
    """The rewrite job settings for `data.augment`: every source is generated, `data.sources` selects later."""
    rcfg = copy.deepcopy(cfg.rewrite)
    rcfg.rewriter = cfg.data.augment
    rcfg.sources = list(SOURCES)
    return rcfg


def select_variants(available: list[str], cfg: Config) -> list[str]:
    """The rewrite variants a run uses: `data.sources` (for LLM-style sources) then the first `num_rewrites`."""
    if cfg.data.augment in ("llm", "shapes") or set(available) & set(SOURCES):
        unknown = [s for s in cfg.data.sources if canonical_source(s) not in available]
        if unknown:
            raise DataError(f"data.sources names {unknown} but the rewrites hold only {available}")
        wanted = [canonical_source(s) for s in cfg.data.sources]
        chosen = [v for v in wanted if v in available]
    else:
        chosen = sorted(available)
    return chosen[:cfg.data.num_rewrites]


def shapeworld_rewrites(cfg: Config, captions: list[str]) -> dict[str, list[str]]:
    """variant -> one rewrite per caption, from `data.rewrites_dir` or the rewrite job's cache (made now if absent)."""
    if cfg.data.augment == "none":
        return {}
    out_dir = rewrite_cache_dir(cfg, captions)
    if cfg.data.rewrites_dir and out_dir.exists():
        rewrites = load_rewrites(out_dir)
    else:
        rewrites = rewrite_captions(captions, out_dir, rewrite_config(cfg))
    for variant, texts in rewrites.items():
        if len(texts) != len(captions):
            raise DataError(f"rewrite file {out_dir / (variant + '.txt')} has {len(texts)} lines "
                            f"but there are {len(captions)} captions")
    return rewrites


def tokenizer_corpus(cfg: Config, captions: list[str], rewrites: dict[str, list[str]]) -> list[str] | None:
    """The text a ShapeWorld run's BPE is trained on: the world's text, whatever the run's text policy (None when
    the tokenizer is not a BPE trained here).

    The paper's models all share CLIP's one BPE, trained on a broad corpus. Our analogue for ShapeWorld: the
    original captions plus the world-aware rewrites of them. Every run on the same world (CLIP, LaCLIP, MT,
    EDA...) therefore gets the same tokenizer, so a comparison changes only the text the model trains on.
    """
    if cfg.model.text == "hf" or cfg.data.tokenizer != "bpe":
        return None
    if cfg.data.augment != "shapes" or cfg.rewrite.leak_free or cfg.rewrite.error_rate or \
            cfg.rewrite.standin != "full":
        world = copy.deepcopy(cfg)        # the plain stand-in's rewrites (the controls change only the training text)
        world.data.augment, world.data.rewrites_dir = "shapes", ""
        world.rewrite.leak_free, world.rewrite.error_rate, world.rewrite.standin = False, 0.0, "full"
        rewrites = shapeworld_rewrites(world, captions)
    return captions + [t for v in sorted(rewrites) for t in rewrites[v]]


def _shapeworld_rewrites(cfg: Config) -> Rewrites:
    captions = list(shapeworld_split(cfg, "train").captions)
    rewrites = shapeworld_rewrites(cfg, captions)
    variants = select_variants(list(rewrites), cfg) if rewrites else []
    census = {}
    if cfg.train.policy != "clip":
        if not variants:
            raise DataError(f"train.policy={cfg.train.policy} on ShapeWorld: no rewrite in use (data.augment="
                            f"{cfg.data.augment}, data.num_rewrites={cfg.data.num_rewrites}); set data.augment=shapes "
                            "(or eda / llm / backtranslate), or train with train.policy=clip")
        records = ((i, readers.Record(str(i), None, c, {v: rewrites[v][i] for v in variants}))
                   for i, c in enumerate(captions))
        job = readers.rewrites_dir_captions(cfg.data.rewrites_dir) if cfg.data.rewrites_dir else None  # made for these?
        census = rewrite_census(records, variants, job, where=cfg.data.rewrites_dir)
        check_identical(cfg, census, f"data.augment={cfg.data.augment} on ShapeWorld")
    where = str(rewrite_cache_dir(cfg, captions)) if rewrites and variants else ""
    return Rewrites(captions, variants, where, {v: f"{where}/{v}.txt" for v in variants}, census,
                    tokenizer_corpus(cfg, captions, rewrites), texts={v: rewrites[v] for v in variants})


def rewrite_census(records, variants: list[str], job_captions: list[str] | None = None,
                   key_line: dict | None = None, where: str = "") -> dict:
    """Per variant in use: {"n", "identical", "share"}: how many samples' rewrites equal their caption (or are
    missing, so the caption is used: `readers.texts_of`). `records` yields (row index or sample key, record with
    .caption / .rewrites). With `job_captions` (the captions the rewrite job rewrote), every sample's caption must
    be the one its rewrite line was made from, else a DataError names the first that differs."""
    n, same = 0, dict.fromkeys(variants, 0)
    bad, first = 0, ""
    for pos, rec in records:
        n += 1
        caption = rec.caption.strip()
        for v in variants:
            text = (rec.rewrites.get(v) or "").strip()
            if not text or text == caption:
                same[v] += 1
        if job_captions is not None:
            line = key_line.get(pos) if key_line is not None else pos
            if line is None or line >= len(job_captions) or job_captions[line].strip() != caption:
                bad += 1
                if not first:
                    made = "no line (key not in keys.txt)" if line is None or line >= len(job_captions) else \
                        f"line {line + 1} was made from {job_captions[line][:60]!r}"
                    first = f"sample {pos}: caption {rec.caption[:60]!r}, {made}"
    if bad:
        raise DataError(f"{where}: the rewrites were made from other captions: {bad} of {n} samples differ "
                        f"({first}); the data changed since `laclip-lite rewrite` ran - rewrite it again")
    return {v: {"n": n, "identical": same[v], "share": round(same[v] / n, 4) if n else 0.0} for v in variants}


def check_identical(cfg: Config, census: dict, what: str, hint: str = "") -> None:
    """Stop when a variant's share of rewrites equal to their caption exceeds `data.max_identical`; `hint` (after
    " - ") says what to do about it on this source."""
    limit = cfg.data.max_identical
    over = {v: c for v, c in census.items() if c["share"] > limit}
    if over:
        parts = ", ".join(f"{v} {c['identical']}/{c['n']} ({c['share']:.0%})" for v, c in over.items())
        raise DataError(f"{what}: rewrites identical to their caption: {parts}, above data.max_identical={limit:g}; "
                        f"train.policy={cfg.train.policy} would train CLIP under another name"
                        f"{' - ' + hint if hint else ''} (or train with "
                        "train.policy=clip, or raise data.max_identical)")


# Which shipped rewrite variants each `data.augment` accepts as its own.
_KIND = {"llm": re.compile(rf"^({'|'.join(SOURCES)}|coco|rewrite\d*)$"),
         "shapes": re.compile(rf"^({'|'.join(SOURCES)}|coco)$"),
         "eda": re.compile(r"^eda\d+$"), "backtranslate": re.compile(r"^bt\d+$")}


def _file_rewrites(cfg: Config, rank: int, world_size: int) -> Rewrites:
    """The texts of a file source's samples: its captions, and for a laclip / mt run the rewrites in use (a
    DataError before training naming what is missing when there are none). Shipped rewrites (files beside the
    CSV or in `data.rewrites_dir`, the tar samples' JSON, HF columns) are used when present and of the kind
    `data.augment` names ("none" takes any); otherwise a CSV gets `eda` / `shapes` rewrites from the rewrite job's
    cache (made now when absent) and `llm` / `backtranslate` ones read from that cache (made by
    `laclip-lite rewrite`). The captions are read without decoding a single image."""
    wants = cfg.train.policy != "clip" and cfg.data.num_rewrites > 0   # clip reads the original caption only
    source = readers.open_source(cfg.data, split="train", rank=rank, world_size=world_size, rewrites=wants)
    variants, where, census = [], "", {}
    if wants:
        source, variants, where = _file_variants(cfg, source, rank, world_size)
        census = _file_census(cfg, source, variants, where)
    captions = list(source.captions())        # CSV / HF rows, or every tar shard's .txt members; no image decoded
    # Rewrites are left out of the BPE corpus, so every text policy on the same data gets the same tokenizer.
    corpus = None if cfg.model.text == "hf" or cfg.data.tokenizer != "bpe" else captions
    return Rewrites(captions, variants, where, _origin_files(source, variants), census, corpus, source=source)


def _file_variants(cfg: Config, source, rank: int, world_size: int):
    """(source, variants, where from) of `_file_rewrites`: shipped rewrites, else the rewrite job's cache."""
    augment = cfg.data.augment
    shipped = list(getattr(source, "variants", []) or [])
    usable = [v for v in shipped if augment == "none" or _KIND[augment].match(v)]
    where = _describe_source(source)
    if usable:
        variants = select_variants(usable, cfg)
        if variants:
            return source, variants, where
    if augment == "none" or cfg.data.rewrites_dir or not isinstance(source, readers.LaclipCsvSource):
        found = f"found: {', '.join(shipped)}" if shipped else "found none"
        kind = "" if augment == "none" else f"{augment} "
        raise DataError(
            f"train.policy={cfg.train.policy} on {cfg.data.source}: no {kind}rewrites in use ({found} in "
            f"{cfg.data.rewrites_dir or where}); get rewrites: laclip-lite rewrite --input {cfg.data.source} --out "
            "DIR --rewriter llm --model MODEL, then --set data.rewrites_dir=DIR (or ship them: <variant>.txt beside "
            "a CSV, {'rewrites': {...}} in each tar sample's JSON, HF columns; a CSV also takes data.augment=eda), "
            "or train with train.policy=clip")
    captions = list(source.captions())
    out_dir = rewrite_cache_dir(cfg, captions)
    rcfg = rewrite_config(cfg)
    if augment in ("eda", "shapes"):
        rewrite_captions(captions, out_dir, rcfg, progress=False)      # cheap; resumes / reuses the cache
    elif not _cache_complete(out_dir, captions, rcfg):
        names = ", ".join(f"{source.csv_path.parent}/{v}.txt" for v in rcfg.sources)
        raise DataError(
            f"data.augment={augment} on {source.csv_path}: no {augment} rewrites found - no rewrite files beside "
            f"the CSV ({names}, or {source.csv_path.stem}_<variant>.txt), none in data.rewrites_dir "
            f"({cfg.data.rewrites_dir or 'not set'}), and no finished rewrite cache at {out_dir}. Make them first: "
            f"laclip-lite rewrite --input {source.csv_path} --out DIR --rewriter {augment} --model MODEL, "
            "then --set data.rewrites_dir=DIR")
    rewrites = load_rewrites(out_dir)
    files = {v: out_dir / f"{v}.txt" for v in rewrites}
    source = readers.open_source(cfg.data, "train", rank, world_size, rewrite_files=files)
    variants = select_variants(list(rewrites), cfg)
    if not variants:
        raise DataError(f"train.policy={cfg.train.policy} on {source.csv_path}: data.sources={cfg.data.sources} "
                        f"selects none of the rewrites in {out_dir} ({', '.join(rewrites)})")
    return source, variants, str(out_dir)


def _rewrites_folder(source) -> str:
    """The rewrite folder whose job captions a source's rewrites must match ("" when they came with the data)."""
    table = getattr(source, "rewrite_table", None)
    if table:
        return table["dir"]
    if getattr(source, "rewrites_dir", ""):
        return source.rewrites_dir
    files = list((getattr(source, "rewrite_files", None) or {}).values())
    return str(Path(files[0]).parent) if files and (Path(files[0]).parent / "report.json").exists() else ""


def _file_census(cfg: Config, source, variants: list[str], where: str) -> dict:
    """`rewrite_census` over every sample of a file source (no image decoded), checked against the rewrite job's
    captions when the rewrites come from a rewrite folder, then the identical-share limit."""
    folder = _rewrites_folder(source)
    job = readers.rewrites_dir_captions(folder) if folder else None
    table = getattr(source, "rewrite_table", None)
    key_line = table["keys"] if table else None
    census = rewrite_census(source.text_records(), variants, job, key_line, where=folder or str(cfg.data.source))
    hint = ("the ShapeWorld stand-in finds nothing to rewrite in captions outside ShapeWorld; make real rewrites with "
            "laclip-lite rewrite --rewriter llm and set data.rewrites_dir" if cfg.data.augment == "shapes" else "")
    check_identical(cfg, census, f"train.policy={cfg.train.policy} on {cfg.data.source} (rewrites from {where})",
                    hint)
    return census


def _origin_files(source, variants: list[str]) -> dict:
    """variant -> the file (or place) its texts come from, for run.json."""
    files = getattr(source, "rewrite_files", None) or {}
    table = getattr(source, "rewrite_table", None)
    out = {}
    for v in variants:
        if v in files:
            out[v] = str(files[v])
        elif table:
            out[v] = f"{table['dir']}/{v}.txt (by key: {table['dir']}/keys.txt)"
        elif getattr(source, "rewrites_dir", ""):
            out[v] = f"{source.rewrites_dir}/{v}.txt (by row)"
        elif hasattr(source, "shards"):
            out[v] = "each sample's JSON"
        else:
            out[v] = f"column {v!r}"
    return out


def _cache_complete(out_dir: Path, captions: list[str], rcfg) -> bool:
    report = out_dir / "report.json"
    if not report.exists():
        return False
    try:
        fingerprint = json.loads(report.read_text()).get("fingerprint")
        return fingerprint == stable_hash(list(captions), job_settings(rcfg))
    except ValueError:
        return False


def _describe_source(source) -> str:
    files = getattr(source, "rewrite_files", None)
    if files:
        return ", ".join(str(p) for p in files.values())
    folder = _rewrites_folder(source)
    if folder:
        return folder
    if hasattr(source, "csv_path"):
        return f"rewrite files beside {source.csv_path}"
    if hasattr(source, "shards"):
        return "the shards' JSON"
    return "the dataset's columns"
