"""Configuration: one dataclass per concern, named presets, and `--set key=value` overrides.

A run is fully described by a `Config` (model + data + train + rewrite + eval). It round-trips through a plain dict
and YAML (`config.yaml` beside every checkpoint). Overrides name a field by its dotted path
(`train.steps=500`, `model.vision=resnet`); an unknown key or a value of the wrong type raises `ConfigError`
naming the key, before any work starts.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from laclip_lite.constants import AUGMENTS, DATASET_TASKS, POLICIES, SOURCES, SPLITS
from laclip_lite.errors import ConfigError  # noqa: F401  (importable from here as before)
from laclip_lite.files import atomic_write_text


@dataclass
class ModelConfig:
    vision: str = "vit"                 # image tower: "vit" or "resnet"
    image_size: int = 32                # input resolution (square)
    patch_size: int = 8                 # ViT patch size (image_size must be divisible by it)
    vision_stem: str = "patch"          # ViT tokeniser: "patch" (CLIP's linear patchify) or "conv" (3x3 stride-2 convs;
                                        # patch a power of 2)
    vision_width: int = 64              # ViT width / ResNet base width (stem output channels)
    vision_layers: int = 2              # ViT: blocks; ResNet: blocks per stage (4 stages; 0 = RN50's 3,4,6,3)
    vision_heads: int = 4               # ViT attention heads (ResNet: attention-pool heads)
    text: str = "transformer"           # text tower: "transformer" (causal, from scratch) or "hf" (pretrained encoder)
    text_model: str = ""                # text="hf": local path / hub name of a HF encoder; "minilm" = packaged MiniLM
    text_lock: bool = False             # text="hf": freeze the pretrained encoder (projection still trains)
    context_length: int = 32            # tokens per caption, end-of-text included
    text_width: int = 64                # causal Transformer width
    text_layers: int = 2                # causal Transformer blocks
    text_heads: int = 4                 # causal Transformer attention heads
    vision_act: str = "gelu"            # ViT MLP activation: "gelu" or "quickgelu" (OpenAI CLIP's x*sigmoid(1.702x))
    text_act: str = "gelu"              # causal text Transformer MLP activation: "gelu" or "quickgelu"
    text_buckets: int = 4               # causal text tower: run texts in this many length-sorted chunks, each trimmed
                                        # of padding (exact)
    vocab_size: int = 0                 # filled from the tokenizer when 0
    pad_id: int = 0                     # padding token id (filled from the tokenizer)
    embed_dim: int = 64                 # joint embedding size after the projections
    init_logit_scale: float = math.log(1 / 0.07)  # learnable log temperature at init
    max_logit_scale: float = 100.0      # logit scale (exp) is clamped to at most this after each step
    grad_checkpointing: bool = False    # recompute tower activations in backward to save memory


@dataclass
class DataConfig:
    source: str = "shapeworld"          # "shapeworld", a LaCLIP CSV, a folder/glob of .tar shards, or a HF dataset
                                        # folder / "hf:name"
    format: str = "auto"                # "auto" (guess from source), "shapeworld", "laclip", "wds", "hf"
    image_root: str = ""                # laclip: folder the CSV's relative image paths start from ("" = CSV's folder)
    image_column: str = "image"         # hf: column holding the image
    caption_column: str = "caption"     # hf: column holding the original caption
    train_size: int = 1500              # shapeworld: training images (small on purpose: the paper's data-scarce regime)
    val_size: int = 500                 # shapeworld: validation images
    test_size: int = 1000               # shapeworld: test images (zero-shot / retrieval evaluation)
    world_seed: int = 0                 # shapeworld: seed of the procedural world (independent of train.seed)
    augment: str = "none"               # rewrite cache for text augmentation: none | eda | backtranslate | llm | shapes
    rewrites_dir: str = ""              # folder of line-aligned rewrite files (<variant>.txt); "" = the run's own cache
    sources: list[str] = field(default_factory=lambda: list(SOURCES))  # meta-pair sources used (llm / shapes)
    num_rewrites: int = 4               # how many rewrites per caption take part (0..M)
    max_identical: float = 0.5          # laclip / mt stop before step 0 when more than this share of a variant's
                                        # rewrites equal their caption (a stand-in that found nothing to say)
    tokenizer: str = "bpe"              # "bpe" (trained on the captions, cached), "clip" (CLIP's BPE), or HF path/name
    clip_bpe_path: str = ""             # tokenizer=clip: bpe_simple_vocab_16e6.txt.gz ("" = installed open_clip's)
    bpe_vocab_size: int = 1000          # vocabulary size of the trained BPE tokenizer
    crop_scale: list[float] = field(default_factory=lambda: [0.7, 1.0])  # random-resized-crop area range (training)
    hflip: bool = True                  # random horizontal flips for training images (the caption is kept: on
                                        # ShapeWorld ~2.3% of the pairs then name the wrong side; see
                                        # docs/results/README.md)
    num_workers: int = 0                # DataLoader worker processes for file-based sources (0 = main process)
    num_samples: int = 0                # dataset size for train.epochs (0 = count the source; tar shards need it)
    max_member_bytes: int = 64 << 20    # tar shards: a member larger than this is bad data (skipped and counted)

    @property
    def is_shapeworld(self) -> bool:
        """The procedural world, rendered in memory (with labelled val/test splits), rather than files."""
        return self.source == "shapeworld" or self.format == "shapeworld"


@dataclass
class TrainConfig:
    policy: str = "clip"                # text policy: "clip" (original only), "laclip" (uniform over
                                        # original+rewrites), "mt" (all texts, multi-text loss)
    steps: int = 1000                   # optimizer steps
    batch_size: int = 256               # images per micro-batch per process ("per GPU")
    accum_steps: int = 1                # micro-batches per step
    accum_mode: str = "micro"           # "micro": each micro-batch's loss contrasts its own samples; "global": one
                                        # loss over the global batch (features cached, each micro-batch recomputed)
    global_batch: int = 0               # images per step, all processes; > 0 picks accum_steps for the GPUs at hand
    epochs: float = 0                   # > 0: steps = epochs x (dataset size // global batch) (laclip_lite.schedule)
    warmup_epochs: float = 0            # with epochs > 0: train.warmup_steps = warmup_epochs x steps per epoch
    lr: float = 3e-3                    # peak learning rate
    lr_start: float = 0.0               # lr at the start of the warm-up (0: lr / warmup_steps at step 0)
    lr_end: float = 0.0                 # lr the cosine decay ends at
    warmup_steps: int = 50              # linear warm-up steps, then cosine decay to lr_end
    weight_decay: float = 0.1           # AdamW weight decay on the tensors decay_rule picks
    decay_rule: str = "kit"             # "kit": no decay on biases, norms, embeddings, logit scale; "release":
                                        # LaCLIP train.py's (none on <2-D tensors and names with bias / ln / bn)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # AdamW betas
    eps: float = 1e-6                   # AdamW epsilon
    grad_clip: float = 1.0              # max global grad norm (0 = off)
    precision: str = "auto"             # "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32", "bf16"
    device: str = "auto"                # "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    seed: int = 0                       # seeds model init, data order, augmentation and text draws
    compile: bool = False               # torch.compile the model
    log_every: int = 25                 # steps between metrics.jsonl rows
    log_to: list[str] = field(default_factory=lambda: ["jsonl"])  # sinks: jsonl (always), tensorboard, wandb
                                        # (offline unless WANDB_MODE is set); laclip_lite.log_sinks
    print_every_s: float = 30.0         # progress bars off: seconds between plain progress lines (0 = every row)
    eval_every: int = 0                 # steps between zero-shot evaluations on the val split (0 = only at the end)
    best_metric: str = ""               # a validation metric (e.g. val/color_shape_top1, imagenet/top1; higher is
                                        # better): checkpoint_best.pt keeps the step that scored best ("" = off)
    ckpt_every: int = 250               # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 0           # > 0: every N-th periodic checkpoint is also kept as checkpoint_<step>.pt
    threads: int = 0                    # torch CPU threads (0 = torch default)
    dist_timeout: float = 600.0         # torchrun: seconds a rank waits for the others in a collective before the
                                        # job ends naming the rank that stopped answering (> rank-0 eval time)


@dataclass
class RewriteConfig:
    rewriter: str = "shapes"            # "llm", "eda", "backtranslate", "shapes" (the world-aware LLM stand-in)
    model: str = ""                     # llm: causal LM path / name; backtranslate: "fwd_path,back_path"
    sources: list[str] = field(default_factory=lambda: list(SOURCES))  # meta-pair sources, one rewrite each
    num_variants: int = 4               # eda / backtranslate: rewrites per caption
    k_shot: int = 3                     # llm: meta pairs sampled per prompt
    temperature: float = 0.9            # llm: sampling temperature
    top_p: float = 0.95                 # llm: nucleus sampling
    max_new_tokens: int = 77            # llm: generation budget
    batch_size: int = 32                # captions per generation batch
    seed: int = 0                       # makes rewrites deterministic
    trust_remote_code: bool = False     # llm: allow custom model code from the model folder
    leak_free: bool = False             # shapes (control): never write a zero-shot class name the caption did not
    error_rate: float = 0.0             # shapes (control): chance a rewrite states one fact wrong (drop/swap/add)
    standin: str = "full"               # shapes (control): full | denoise | structure | random-lexicon | partial
    prompt_format: str = "kit"          # llm: "kit" (this kit's one-line-per-pair prompt) or "laclip" (the release's)
    device: str = "auto"                # llm/backtranslate: "auto" (LOCAL_RANK / shard -> its GPU), "cpu", "cuda:N"
    backend: str = "auto"               # llm: "auto" (vLLM when installed and CUDA is present, else hf), "hf", "vllm"
    vllm_gpu_memory: float = 0.9        # llm, vLLM backend: share of the GPU's memory vLLM may take (its
                                        # gpu_memory_utilization; lower it to share the GPU)
    threads: int = 0                    # torch CPU threads of the rewriting process (0 = torch default)
    print_every_s: float = 30.0         # progress bar off: seconds between plain progress lines


TASKS = DATASET_TASKS   # what an eval.datasets entry can be scored on (defined in constants)


# ---------------------------------------------------------------------------------------------------------
# The eval.datasets entries (their shape; `data.eval_layouts` opens the paths)
@dataclass
class EvalSpec:
    path: str                          # the dataset: a folder (CLIP_benchmark / ImageFolder) or a .csv / .json file
    task: str = ""                     # zeroshot | retrieval | linear_probe | fewshot ("" = the layout's own)
    classnames: str = ""               # file of class names (lines in sorted folder order, or JSON folder -> name)
    templates: str = ""                # template file or named set ("" = the folder's own file, else `default`)
    name: str = ""                     # prefix of its metrics ("" = the folder / file name)
    split: str = "test"                # split scored (ImageFolder without `test`: `val`); probes train on `train`
    image_root: str = ""               # CSV / Karpathy JSON: folder the image paths start from ("" = the file's)
    k: int = 5                         # fewshot: training examples per class

    @property
    def label(self) -> str:
        """The metric prefix: `name`, else the file / folder name; a derived name that is one of the kit's own
        prefixes (RESERVED_PREFIXES: `test`, `val`, `train`) becomes `eval_<name>` (a captions CSV named test.csv
        logs as `eval_test/...`, never as the ShapeWorld test split's `test/...`)."""
        if self.name:
            return self.name
        p = Path(self.path)
        derived = (p.stem if p.suffix else p.name) or "dataset"
        return f"eval_{derived}" if derived in RESERVED_PREFIXES else derived


# Metric prefixes the kit writes itself (ShapeWorld's splits, the training loss): no eval set may log under them.
RESERVED_PREFIXES = ("test", "val", "train")


def parse_spec(entry, where: str = "eval.datasets") -> EvalSpec:
    """A path string or a mapping -> EvalSpec; an unknown key or a bad task raises ConfigError naming it."""
    if isinstance(entry, EvalSpec):
        return entry
    if isinstance(entry, (str, Path)):
        entry = {"path": str(entry)}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: an entry must be a path or a mapping with 'path', got {entry!r}")
    known = {f.name for f in dataclasses.fields(EvalSpec)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in {entry!r} (known: {', '.join(sorted(known))})")
    if not entry.get("path"):
        raise ConfigError(f"{where}: entry {entry!r} has no 'path'")
    spec = EvalSpec(**{k: (int(v) if k == "k" else str(v)) for k, v in entry.items() if v is not None})
    if spec.task and spec.task not in TASKS:
        raise ConfigError(f"{where}: task {spec.task!r} of {spec.path} is not one of: {', '.join(TASKS)}")
    if spec.split not in SPLITS:
        raise ConfigError(f"{where}: split {spec.split!r} of {spec.path} is not one of: {', '.join(SPLITS)}")
    if spec.k < 1:
        raise ConfigError(f"{where}: k must be >= 1 for {spec.path}, got {spec.k}")
    if spec.name in RESERVED_PREFIXES:
        raise ConfigError(f"{where}: name {spec.name!r} of {spec.path} is one of the kit's own metric prefixes "
                          f"({', '.join(RESERVED_PREFIXES)}); choose another")
    return spec


def parse_specs(entries, where: str = "eval.datasets") -> list[EvalSpec]:
    """Every entry parsed; two entries with the same name are an error (their metrics would collide)."""
    specs = [parse_spec(e, f"{where}[{i}]") for i, e in enumerate(entries or [])]
    names = [s.label for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: several entries are named {dup}; give each a distinct 'name'")
    return specs



@dataclass
class EvalConfig:
    # Evaluation sets on files, scored every `train.eval_every` steps and at the end of training. Each entry is a
    # path, or a mapping {path, task, classnames, templates, name, split, image_root, k} (laclip_lite.config.
    # EvalSpec); results are logged as "<name>/<metric>". ShapeWorld runs also score the world's tasks.
    datasets: list[Any] = field(default_factory=list)  # e.g. ["data/imagenet_val", {path: coco.json, task: retrieval}]
    batch_size: int = 256               # images / texts per forward pass while evaluating
    num_workers: int = 0                # DataLoader worker processes decoding evaluation images (0 = main process)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rewrite: RewriteConfig = field(default_factory=RewriteConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        cfg = cls()
        for section, values in (d or {}).items():
            if not hasattr(cfg, section):
                raise ConfigError(f"unknown config section {section!r} (known: {', '.join(_sections(cfg))})")
            for key, value in (values or {}).items():
                set_value(cfg, f"{section}.{key}", value)
        return cfg

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        return cls.from_dict(read_yaml_mapping(path))

    def validate(self) -> "Config":
        """Check cross-field constraints; raise ConfigError naming the key."""
        m, d, t = self.model, self.data, self.train
        _choice("model.vision", m.vision, ["vit", "resnet"])
        _choice("model.text", m.text, ["transformer", "hf"])
        if m.vision == "vit" and m.image_size % m.patch_size:
            raise ConfigError(f"model.image_size={m.image_size} is not divisible by model.patch_size={m.patch_size}")
        _choice("model.vision_stem", m.vision_stem, ["patch", "conv"])
        _choice("model.vision_act", m.vision_act, ["gelu", "quickgelu"])
        _choice("model.text_act", m.text_act, ["gelu", "quickgelu"])
        if m.vision_stem == "conv" and m.patch_size & (m.patch_size - 1):
            raise ConfigError(f"model.vision_stem=conv needs a power-of-two model.patch_size, got {m.patch_size}")
        if m.text == "hf" and not m.text_model:
            raise ConfigError("model.text=hf needs model.text_model (a local path, a hub name, or 'minilm')")
        _choice("data.format", d.format, ["auto", "shapeworld", "laclip", "wds", "hf"])
        _choice("data.augment", d.augment, AUGMENTS)
        _choice("train.policy", t.policy, POLICIES)
        _choice("train.precision", t.precision, ["auto", "fp32", "bf16"])
        _choice("train.decay_rule", t.decay_rule, ["kit", "release"])
        _choice("train.accum_mode", t.accum_mode, ["micro", "global"])
        for sink in t.log_to:
            _choice("train.log_to", sink, ["jsonl", "tensorboard", "wandb"])   # log_sinks.SINKS
        if t.epochs < 0 or t.warmup_epochs < 0 or t.global_batch < 0 or d.num_samples < 0:
            raise ConfigError("train.epochs, train.warmup_epochs, train.global_batch and data.num_samples must be >= 0")
        if t.epochs and t.warmup_epochs >= t.epochs:
            raise ConfigError(f"train.warmup_epochs={t.warmup_epochs} must be below train.epochs={t.epochs}")
        if not 0 <= d.num_rewrites <= 16:
            raise ConfigError(f"data.num_rewrites must be in 0..16, got {d.num_rewrites}")
        # laclip / mt with no rewrite in use would train plain CLIP under another name: refused here where the
        # config alone shows it (num_rewrites=0; ShapeWorld with augment=none), else by the data path before step 0
        # (laclip_lite.data.dataset). The 0-rewrite point of the num_rewrites ablation is a CLIP run.
        if t.policy in ("laclip", "mt") and (d.num_rewrites == 0 or (d.is_shapeworld and d.augment == "none")):
            why = "data.num_rewrites=0" if d.num_rewrites == 0 else "data.augment=none on ShapeWorld"
            raise ConfigError(f"train.policy={t.policy} needs rewrites, but {why} leaves one text per image (that "
                              "is train.policy=clip); set data.augment (shapes, eda, llm, backtranslate) and "
                              "data.num_rewrites >= 1, or train with train.policy=clip")
        if not 0.0 <= d.max_identical <= 1.0:
            raise ConfigError(f"data.max_identical must be in [0, 1], got {d.max_identical}")
        if t.best_metric and not t.eval_every:
            raise ConfigError(f"train.best_metric={t.best_metric} needs train.eval_every > 0 (it is chosen on the "
                              "validation evaluations during training)")
        if t.best_metric.startswith("test/"):
            raise ConfigError(f"train.best_metric={t.best_metric}: choices are made on validation metrics (val/...), "
                              "never on the test split")
        if t.keep_checkpoints < 0:
            raise ConfigError(f"train.keep_checkpoints must be >= 0, got {t.keep_checkpoints}")
        for key in ("train.steps", "train.batch_size", "train.accum_steps", "model.context_length"):
            if get_value(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {get_value(self, key)}")
        if len(d.crop_scale) != 2 or not 0 < d.crop_scale[0] <= d.crop_scale[1] <= 1:
            raise ConfigError(f"data.crop_scale must be [lo, hi] with 0 < lo <= hi <= 1, got {d.crop_scale}")
        _check_ranges(self)
        parse_specs(self.eval.datasets, where="eval.datasets")  # the entries' shape; the trainer opens the paths
        return self


# Sizes and cadences, each with its lowest allowed value (a cadence of 0 means "off"; a negative one would act at
# every step, a size of 0 crashes later or scores nothing).
_AT_LEAST: dict[str, float] = {
    "train.log_every": 1, "train.ckpt_every": 0, "train.eval_every": 0, "train.warmup_steps": 0,
    "train.threads": 0, "train.weight_decay": 0, "train.grad_clip": 0, "train.lr_start": 0, "train.lr_end": 0,
    "train.dist_timeout": 0, "train.keep_checkpoints": 0,
    "data.train_size": 1, "data.val_size": 0, "data.test_size": 1, "data.num_workers": 0,
    "data.bpe_vocab_size": 1, "data.max_member_bytes": 1, "model.image_size": 1, "model.patch_size": 1,
    "model.vision_width": 1, "model.vision_layers": 0, "model.vision_heads": 1, "model.text_width": 1,
    "model.text_layers": 1, "model.text_heads": 1, "model.text_buckets": 1, "model.embed_dim": 1,
    "eval.batch_size": 1, "eval.num_workers": 0, "rewrite.k_shot": 0, "rewrite.batch_size": 1,
}


def _check_ranges(cfg: Config) -> None:
    """Range checks of single values (ConfigError naming the key and the allowed range)."""
    for key, low in _AT_LEAST.items():
        value = get_value(cfg, key)
        if value < low:
            what = "off" if low == 0 and key.endswith("_every") else ""
            raise ConfigError(f"{key} must be >= {low:g}{f' (0 = {what})' if what else ''}, got {value}")
    t, d = cfg.train, cfg.data
    if not (t.lr > 0 and math.isfinite(t.lr)):
        raise ConfigError(f"train.lr must be a finite number > 0, got {t.lr}")
    if t.eps <= 0:
        raise ConfigError(f"train.eps must be > 0, got {t.eps}")
    # Rules about the ShapeWorld source's own settings (its val split, its train_size), checked where the config
    # alone shows them; file sources are checked when opened (data/ imports config, so config cannot ask data/).
    if d.is_shapeworld and t.eval_every and not d.val_size:
        raise ConfigError(f"train.eval_every={t.eval_every} scores the validation split: data.val_size must be >= 1")
    if d.is_shapeworld and t.batch_size > d.train_size:
        raise ConfigError(f"train.batch_size={t.batch_size} is larger than the data (data.train_size="
                          f"{d.train_size}): lower train.batch_size or raise data.train_size")


def _choice(key: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(allowed)}")


def _sections(cfg: Config) -> list[str]:
    return [f.name for f in dataclasses.fields(cfg)]


def _field(cfg: Config, key: str) -> tuple[Any, dataclasses.Field]:
    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(f"config key {key!r} must look like section.field (e.g. train.steps)")
    section, name = parts
    if section not in _sections(cfg):
        raise ConfigError(f"unknown config key {key!r}: no section {section!r} (known: {', '.join(_sections(cfg))})")
    obj = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        close = [n for n in fields if n.startswith(name[:3])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}")
    return obj, fields[name]


def key_type(key: str) -> Any:
    """The type of config key `key` (train.steps -> int), or a ConfigError naming an unknown key."""
    obj, f = _field(Config(), key)
    return _type_of(obj, f.name)


def get_value(cfg: Config, key: str) -> Any:
    obj, f = _field(cfg, key)
    return getattr(obj, f.name)


def coerce_value(key: str, value: Any, typ: Any, strict: bool = False) -> Any:
    """The kit's one coercer: `value` (a YAML-parsed object or a raw string) as the type `typ` (str, int, float,
    bool, list[...], Any), or a ConfigError naming `key`. Config fields (`set_value`, so `--set`, YAML files and
    `apply_overrides`) and the notebooks' parameters (`course.params`: config keys non-strict, knobs strict) go
    through here.

    strict=True (the notebooks' lesson-only knobs, already Python values): no parsing of text, so "500" is not an int,
    "true" or 1 not a bool, and 3 not a string; a list may still be written "a,b,c" (its items then text)."""
    if typ is Any:                      # checked where it is used (eval.datasets entries: parse_spec)
        return value
    origin = typing.get_origin(typ)
    if origin is list:
        (inner,) = typing.get_args(typ)
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v] if value.strip() else []
            strict = False              # the items of "a,b,c" are text by construction
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} expects a list of {inner.__name__}, got {value!r}")
        return [coerce_value(key, v, inner, strict) for v in value]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if strict:
            raise ConfigError(f"{key} expects a bool (True/False), got {value!r}")
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key} expects a bool (true/false), got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects an int, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and not strict:
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{key} expects an int, got {value!r}")
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects a float, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and not strict:
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} expects a float, got {value!r}")
    if typ is str:
        if isinstance(value, str) or (not strict and isinstance(value, (int, float)) and not isinstance(value, bool)):
            return str(value)
        raise ConfigError(f"{key} expects a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {typ!r}")


_HINTS: dict[type, dict[str, Any]] = {}


def _type_of(obj: Any, name: str) -> Any:
    cls = type(obj)
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls][name]


def set_value(cfg: Config, key: str, value: Any) -> None:
    obj, f = _field(cfg, key)
    setattr(obj, f.name, coerce_value(key, value, _type_of(obj, f.name)))


def apply_overrides(cfg: Config, overrides: list[str] | dict[str, Any] | None) -> Config:
    """Apply `key=value` strings (CLI `--set`) or a {key: value} dict; values are parsed as YAML scalars."""
    if not overrides:
        return cfg
    items = overrides.items() if isinstance(overrides, dict) else [parse_key_value(o) for o in overrides]
    for key, value in items:
        if isinstance(value, str):
            obj, f = _field(cfg, key)
            if _type_of(obj, f.name) is not str:
                try:
                    value = yaml.safe_load(value) if value.strip() else value
                except yaml.YAMLError:
                    pass
        set_value(cfg, key, value)
    return cfg


def parse_key_value(item: str, what: str = "override", example: str = "train.steps=500") -> tuple[str, str]:
    """The kit's one `key=value` parser (CLI --set, notebook overrides, sweep and report parameters):
    "train.steps = 500" -> ("train.steps", "500"). Splits at the first "=", strips both sides, leaves the value
    a string (apply_overrides parses it as YAML); no "=" or an empty key is a ConfigError naming `what`."""
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"{what} {item!r} must look like key=value (e.g. {example})")
    return key.strip(), value.strip()


# ---------------------------------------------------------------------------------------------------------
# Presets. `tiny` is sized for 2 CPU cores (about two minutes); the others are the paper's GPU scale.
# Each preset is a dict of overrides on the defaults above, so `config.yaml` always shows every value.
# The LaCLIP release (github.com/LijieFan/LaCLIP) for CC3M / CC12M, number by number. "release" = its train.py /
# models.py / utils.py; "paper" = the LaCLIP paper's pre-training hyper-parameter table as quoted by the kit's
# issue 12 (not re-checked offline). The release's train.py defaults are --epochs 25 --lr 3e-3 --wd 0.1, so the
# paper's values are what its runs passed on the command line. What the kit does NOT reproduce: the release's
# timm ViT uses LayerNorm on q and k (qk_norm=True) and LayerNorm eps 1e-6; it normalises images with
# ImageNet's mean/std (the kit: CLIP's); it trains in fp16 with a GradScaler (the kit: bf16 autocast on CUDA).
_LACLIP_RELEASE: dict[str, Any] = {
    # release models.py CLIP_VITB16: ViT-B/16 (768 wide, 12 layers, 12 heads) + a 512-wide 12-layer text
    # Transformer with 8 heads, context 77, joint embedding 512
    "model.vision": "vit", "model.image_size": 224, "model.patch_size": 16, "model.vision_width": 768,
    "model.vision_layers": 12, "model.vision_heads": 12, "model.text_width": 512, "model.text_layers": 12,
    "model.text_heads": 8, "model.context_length": 77, "model.embed_dim": 512,
    "model.text_act": "quickgelu",      # release models.py: the text blocks use QuickGELU, the timm ViT nn.GELU
    "model.vision_act": "gelu",
    "data.tokenizer": "clip",           # release tokenizer.py: CLIP's SimpleTokenizer (49,408-token BPE)
    "data.crop_scale": [0.5, 1.0],      # release train.py: RandomResizedCrop(224, scale=(0.5, 1.0)), no flip
    "data.hflip": False,
    "data.num_workers": 10,             # release train.py: --workers 10 per process
    "train.batch_size": 256,            # paper: 256 per GPU (release: --batch-size is per GPU)
    "train.global_batch": 8192,         # paper: 8,192 per step (32 GPUs x 256); fewer GPUs accumulate to reach it
    "train.accum_mode": "global",       # ... keeping all 8,192 samples in every loss (laclip_lite.accumulate)
    "train.epochs": 35,                 # paper (issue 12): 35 epochs
    "train.warmup_epochs": 1,           # paper; release train.py --warmup-epochs default 1
    "train.lr": 1e-3,                   # paper (release default 3e-3)
    "train.lr_start": 1e-6,             # release train.py --lr-start (warm-up starts here)
    "train.lr_end": 1e-5,               # release train.py --lr-end (cosine ends here)
    "train.weight_decay": 0.5,          # paper (release default 0.1)
    "train.decay_rule": "release",      # release train.py: no decay on <2-D tensors and names with bias/ln/bn
    "train.betas": [0.9, 0.98],         # release train.py --betas default
    "train.eps": 1e-8,                  # release train.py --eps default
    "train.grad_clip": 0.0,             # release: no gradient clipping
    "train.log_every": 100, "train.ckpt_every": 2000,   # the kit's own (the release saves once per epoch)
}

# LAION-400M-style ViT-B/32: open_clip's ViT-B-32 recipe of laion/scaling-laws-openclip (trained_models_info:
# ViT-B-32, 400M, lr 5e-4, warm-up 2000, 32 epochs, 128 GPUs x 256 = 32,768 per step) with open_clip's defaults
# for ViT (params.py: betas 0.9/0.98, eps 1e-6; --wd 0.2; aug RandomResizedCrop scale (0.9, 1.0); no clipping;
# the same no-decay rule as the release). open_clip's LAION-400M B/32 weights are ViT-B-32-quickgelu. Fewer GPUs
# reach 32,768 by accum_mode=global accumulation (every loss contrasts all 32,768, as open_clip's --accum-freq).
_LAION_VIT_B32: dict[str, Any] = {
    "model.vision": "vit", "model.image_size": 224, "model.patch_size": 32, "model.vision_width": 768,
    "model.vision_layers": 12, "model.vision_heads": 12, "model.text_width": 512, "model.text_layers": 12,
    "model.text_heads": 8, "model.context_length": 77, "model.embed_dim": 512,
    "model.vision_act": "quickgelu", "model.text_act": "quickgelu",
    "data.tokenizer": "clip", "data.crop_scale": [0.9, 1.0], "data.hflip": False, "data.num_workers": 8,
    "train.batch_size": 256, "train.global_batch": 32_768, "train.accum_mode": "global",
    "train.epochs": 32, "train.warmup_steps": 2000,
    "train.lr": 5e-4, "train.weight_decay": 0.2, "train.betas": [0.9, 0.98], "train.eps": 1e-6,
    "train.decay_rule": "release", "train.grad_clip": 0.0, "train.log_every": 100, "train.ckpt_every": 5000,
}

PRESETS: dict[str, dict[str, Any]] = {
    # Two CPU cores, minutes: ShapeWorld 4,000 images seen ~64 times each (the data-scarce regime where
    # text augmentation matters), ViT width 64 x 2 layers over 16 tokens from a conv stem (a linear 8x8
    # patchify cannot see shapes that fall anywhere inside a patch), causal text Transformer 64 x 1. One text
    # layer keeps CLIP's balance (a text costs far less than an image: ViT-B/16 ~11x): at 2 layers a ~14-token
    # caption cost as much as a 17-token image, so LaCLIP-MT's 5 texts per image made its step 2.45x CLIP's
    # (1.66x at 1 layer), with the same zero-shot results within seed noise (docs/results/README.md).
    "tiny": {"model.vision_stem": "conv", "data.train_size": 4000, "model.text_layers": 1},
    # Lesson 01's first CLIP, data-rich on purpose: it must learn shape as well as colour in minutes on 2 cores
    # (measured: docs/results/README.md, "Lesson 01's first CLIP").
    "tiny-rich": {
        "model.vision": "resnet",       # a small CNN: on 20k images the tiny ViT (either stem) plateaus far lower
                                        # in zero-shot shape (docs/results/README.md)
        "model.vision_width": 16,       # 16-channel stem (ResNet features 512): ~2.8x the tiny ViT's step cost
        "model.vision_layers": 1,       # one bottleneck block per stage (4 stages, 32x32 -> 1x1)
        "model.text_layers": 1,         # tiny's text tower
        "data.train_size": 20000,       # many images, each seen ~8 times: CLIP cannot memorise its captions
        "train.steps": 600,             # learns shape and colour; the steps measured and the ones not taken:
                                        # docs/results/README.md ("Lesson 01's first CLIP")
    },
    # tiny made data-scarce on purpose: the earlier default of `compare` and `ablate` (docs/results keeps the
    # tables that ran on it, with their times).
    "tiny-scarce": {
        "model.vision_stem": "conv", "model.text_layers": 1,  # tiny's model
        "data.train_size": 3000,        # fewer images than tiny's 4,000: each seen ~68 times in 800 steps, so CLIP
                                        # memorises its one caption per image about as much as tiny's 1,000 steps
        "train.steps": 800,             # ~68 passes per image
    },
    # The default of `compare` and `ablate` (constants.EXPERIMENT_PRESET; `--jobs` auto: two one-thread runs side
    # by side), sized so 3 policies x 3 seeds fit 10 minutes on 2 cores (measured: docs/results/README.md).
    "tiny-2k": {
        "model.vision_stem": "conv", "model.text_layers": 1,  # tiny's model
        "data.train_size": 2000,        # each image seen ~77 times in 600 steps of 256: CLIP memorises its one
                                        # caption per image about as much as tiny-scarce's 3,000 in 800 steps
        "train.steps": 600,             # ~77 passes per image (times: docs/results/README.md)
        "data.hflip": False,            # as the LaCLIP release: a flipped image would keep a caption that names
                                        # its left or right side (4.6% of ShapeWorld's captions do)
    },
    # A test-suite preset: seconds, not minutes. Learns little; exercises every code path.
    "test": {
        "model.vision_stem": "conv", "model.vision_width": 32, "model.vision_layers": 1, "model.vision_heads": 2,
        "model.text_width": 32, "model.text_layers": 1, "model.text_heads": 2, "model.embed_dim": 32,
        "model.context_length": 16,
        "data.train_size": 64, "data.val_size": 32, "data.test_size": 64, "data.bpe_vocab_size": 300,
        "train.steps": 4, "train.batch_size": 16, "train.warmup_steps": 1, "train.log_every": 2,
        "train.ckpt_every": 0,
    },
    # The ViT-B/16 architecture with the kit's own schedule (fixed train.steps, warm-up from 0, cosine to 0,
    # gradient clipping at 1.0, a BPE trained on the captions, GELU): an architecture preset, not a paper recipe.
    # For the LaCLIP release's recipe use laclip-cc3m / laclip-cc12m.
    "vit-b16": {
        "model.vision": "vit", "model.image_size": 224, "model.patch_size": 16, "model.vision_width": 768,
        "model.vision_layers": 12, "model.vision_heads": 12, "model.text_width": 512, "model.text_layers": 12,
        "model.text_heads": 8, "model.context_length": 77, "model.embed_dim": 512,
        "data.tokenizer": "bpe", "data.bpe_vocab_size": 49408, "data.crop_scale": [0.5, 1.0], "data.hflip": False,
        "data.num_workers": 8,
        "train.batch_size": 256, "train.lr": 1e-3, "train.weight_decay": 0.5, "train.betas": [0.9, 0.98],
        "train.eps": 1e-8, "train.warmup_steps": 2000, "train.steps": 140_000, "train.log_every": 100,
        "train.ckpt_every": 5000,
    },
    # The LaCLIP release's CC3M / CC12M recipe (_LACLIP_RELEASE above says where each number comes from).
    "laclip-cc3m": dict(_LACLIP_RELEASE),
    "laclip-cc12m": dict(_LACLIP_RELEASE),
    # A LAION-400M-style ViT-B/32 (open_clip's ViT-B-32-quickgelu, as in the LaCLIP paper's LAION-400M models).
    "vit-b32": dict(_LAION_VIT_B32),
    # CLIP ResNet-50 (modified ResNet with attention pooling).
    "rn50": {
        "model.vision": "resnet", "model.image_size": 224, "model.vision_width": 64, "model.vision_layers": 0,
        "model.vision_heads": 32, "model.text_width": 512, "model.text_layers": 12, "model.text_heads": 8,
        "model.context_length": 77, "model.embed_dim": 1024,
        "data.bpe_vocab_size": 49408, "data.crop_scale": [0.5, 1.0], "data.hflip": False, "data.num_workers": 8,
        "train.batch_size": 256, "train.lr": 1e-3, "train.weight_decay": 0.5, "train.eps": 1e-8,
        "train.warmup_steps": 2000, "train.steps": 140_000, "train.log_every": 100, "train.ckpt_every": 5000,
    },
}


def read_yaml(path: str | Path) -> Any:
    """The value a YAML file holds (None when empty); a YAML syntax error or a file that is not text is a
    ConfigError naming the file and line (config files, suites, grids: the kit's one YAML reader)."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or type(e).__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML file that must hold a mapping (a config file, a run's config.yaml): {} when empty; any other
    top-level value is a ConfigError naming the file."""
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds a mapping of sections (model:, data:, train:, ...), "
                          f"got a {type(data).__name__}")
    return data


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return apply_overrides(Config(), dict(PRESETS[name]))


def build_config(preset_name: str = "tiny", overrides: list[str] | dict | None = None,
                 config_file: str | Path | None = None) -> Config:
    """Preset, then a YAML file, then overrides; validated. The one way every entry point makes a Config."""
    cfg = preset(preset_name)
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        for section, values in read_yaml_mapping(path).items():
            if not isinstance(values, dict) and values is not None:
                raise ConfigError(f"{path}: section {section!r} must be a mapping of field: value, got {values!r}")
            for key, value in (values or {}).items():
                set_value(cfg, f"{section}.{key}", value)
    return apply_overrides(cfg, overrides).validate()
