"""Training batches: (images, texts) pairs -> (uint8 images, token ids) for one step, under a text policy.

Every image carries K = 1 + M texts: its original caption followed by M rewrites (a rewrite with fewer than two
words falls back to the original, as in the LaCLIP release). The text policy decides which texts a step sees:

* ``clip``   - the original caption only (text is never augmented: the CLIP baseline);
* ``laclip`` - one text drawn uniformly from the K each time the image is drawn (LaCLIP; no extra compute);
* ``mt``     - all K texts in the same step (LaCLIP-MT); the trainer averages the loss over them.

Batches are a pure function of (seed, step): the order of images is a seeded permutation per epoch and the
text draws and crops use a generator seeded by (seed, step). A resumed run therefore sees exactly the batches
an uninterrupted run would, with no data-loader state to save.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from laclip_lite.constants import POLICIES
from laclip_lite.utils import step_generator


def texts_per_image(caption: str, rewrites: list[str]) -> list[str]:
    """[original] + rewrites, each rewrite of fewer than two words replaced by the original."""
    return [caption] + [r if r and len(r.split()) >= 2 else caption for r in rewrites]


TEXT_STREAM = 2   # the stream of `utils.step_generator` the text draws use (images: 1, crops: 3 + micro-batch)


def text_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step `step`'s text draws: a function of (seed, step) only, so a resumed run redraws
    exactly the same texts."""
    return step_generator(seed, step, stream=TEXT_STREAM)


def draw_text_index(policy: str, batch: int, k: int, generator: torch.Generator | None = None, *,
                    seed: int | None = None, step: int | None = None) -> torch.Tensor | None:
    """Which of the K texts each image uses this step: [B] indices for `laclip`, 0s for `clip`, None for `mt`.

    The draw uses `generator`, or, given `seed` and `step` instead, the one training uses for that step
    (`text_generator(seed, step)`): `draw_text_index("laclip", B, K, seed=0, step=5)` is what step 5 draws.
    """
    if generator is None:
        if seed is None or step is None:
            raise ValueError("draw_text_index: pass a generator, or seed= and step=")
        generator = text_generator(seed, step)
    if policy == "clip" or k == 1:
        return torch.zeros(batch, dtype=torch.long)
    if policy == "laclip":
        return torch.randint(0, k, (batch,), generator=generator)
    if policy == "mt":
        return None
    raise ValueError(f"unknown text policy {policy!r} (known: {', '.join(POLICIES)})")


def select_texts(tokens: torch.Tensor, policy: str, generator: torch.Generator, rank: int = 0,
                 world_size: int = 1) -> torch.Tensor:
    """tokens [B,K,L] -> [B,L] (clip / laclip) or [B,K,L] (mt).

    The draw is made for the global batch (B x world_size) and each rank keeps its slice, so N processes
    draw exactly what one process with the combined batch would.
    """
    b = tokens.shape[0]
    index = draw_text_index(policy, b * world_size, tokens.shape[1], generator)
    if index is None:
        return tokens
    return tokens[torch.arange(b), index[rank * b:(rank + 1) * b]]


@dataclass
class Batch:
    images: torch.Tensor        # uint8 [B,3,H,W]
    tokens: torch.Tensor        # long [B,L] (clip / laclip) or [B,K,L] (mt)
    data_time: float            # seconds spent producing this batch
    skipped: Counter = field(default_factory=Counter)  # reads replaced / rewrites fallen back, by reason


class EpochOrder:
    """Seeded permutation per epoch; step -> this rank's indices. Drops the ragged end of each epoch."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        global_batch = batch_size * world_size
        if n < global_batch:
            raise ValueError(f"{n} training samples cannot fill one global batch of {global_batch} "
                             f"(train.batch_size={batch_size} x {world_size} processes); lower train.batch_size")
        self.n, self.batch_size, self.seed, self.rank = n, batch_size, seed, rank
        self.steps_per_epoch = n // global_batch
        self.global_batch = global_batch
        self._perm_epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(self.n, generator=step_generator(self.seed, epoch, stream=1))
            self._perm_epoch = epoch
        start = offset * self.global_batch + self.rank * self.batch_size
        return self._perm[start:start + self.batch_size]


class InMemoryPairs:
    """All images (uint8 [N,3,H,W]) and all tokenised texts ([N,K,L]) in memory: ShapeWorld and small sets."""

    augmented = False           # batches hold the images as stored: the trainer crops them (on the device)

    def __init__(self, images: torch.Tensor, tokens: torch.Tensor, policy: str, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if images.shape[0] != tokens.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {tokens.shape[0]} text rows")
        self.images, self.tokens, self.policy, self.seed = images, tokens, policy, seed
        self.rank, self.world_size = rank, world_size
        self.order = EpochOrder(images.shape[0], batch_size, seed, rank, world_size)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def texts_per_image(self) -> int:
        return self.tokens.shape[1]

    def batch(self, step: int) -> Batch:
        t0 = time.perf_counter()
        idx = self.order.indices(step)
        tokens = select_texts(self.tokens[idx], self.policy, text_generator(self.seed, step),
                              self.rank, self.world_size)
        return Batch(self.images[idx], tokens, time.perf_counter() - t0)


class _LoaderPairs:
    """Pairs read from files through a DataLoader (worker processes decode and tokenise); subclasses say how
    the stream of (images, tokens [B,K,L]) batches starting at a given step is made."""

    augmented = True            # batches hold images already cropped, once, in the DataLoader workers

    def __init__(self, dataset, tokenizer, policy: str, batch_size: int, seed: int, num_workers: int = 0,
                 rank: int = 0, world_size: int = 1, num_texts: int = 1, pin_memory: bool = False):
        self.dataset, self.tokenizer, self.policy, self.seed = dataset, tokenizer, policy, seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.num_texts, self.pin_memory = num_texts, pin_memory
        self.rank, self.world_size = rank, world_size
        self._iter, self._next_step = None, None

    @property
    def texts_per_image(self) -> int:
        return self.num_texts

    def _stream(self, start_step: int):
        raise NotImplementedError

    def batch(self, step: int) -> Batch:
        t0 = time.perf_counter()
        if self._iter is None or step != self._next_step:
            self._iter = self._stream(step)
        images, tokens, skipped = next(self._iter)
        self._next_step = step + 1
        tokens = select_texts(tokens, self.policy, text_generator(self.seed, step), self.rank,
                              self.world_size)
        return Batch(images, tokens, time.perf_counter() - t0, skipped=skipped)


class MapPairs(_LoaderPairs):
    """Map-style files (CSV, HF): `dataset` yields (uint8 image, texts) or None for a corrupt sample; the
    sampler walks the same seeded epoch order as `InMemoryPairs`, starting at the resumed step."""

    def __init__(self, dataset, tokenizer, policy: str, batch_size: int, seed: int, num_workers: int = 0,
                 rank: int = 0, world_size: int = 1, num_texts: int = 1, pin_memory: bool = False):
        super().__init__(dataset, tokenizer, policy, batch_size, seed, num_workers, rank, world_size, num_texts,
                         pin_memory)
        self.order = EpochOrder(len(dataset), batch_size, seed, rank, world_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def _stream(self, start_step: int):
        order = self.order

        class _Sampler(torch.utils.data.Sampler):
            def __iter__(self):
                step = start_step
                while True:             # (step, index): the dataset draws the sample's augmentation from both
                    yield [(step, i) for i in order.indices(step).tolist()]
                    step += 1

        return iter(DataLoader(self.dataset, batch_sampler=_Sampler(), num_workers=self.num_workers,
                               collate_fn=_Collate(self.tokenizer, self.num_texts), pin_memory=self.pin_memory,
                               persistent_workers=self.num_workers > 0,
                               prefetch_factor=4 if self.num_workers > 0 else None))


class ShardPairs(_LoaderPairs):
    """Pairs streamed from tar shards: each rank and each DataLoader worker reads its own shards, in order.

    One pass over this rank's shards is an epoch; the stream restarts at the end. Resuming at step s replays
    the stream and drops the first s batches (it decodes them again: exact, not free).
    """

    def _stream(self, start_step: int):
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            collate_fn=_Collate(self.tokenizer, self.num_texts), pin_memory=self.pin_memory,
                            drop_last=True, persistent_workers=self.num_workers > 0)
        step, produced = 0, False
        while True:
            for batch in loader:
                produced = True
                if step >= start_step:
                    yield batch
                step += 1
            if not produced:
                raise RuntimeError(f"rank {self.rank}'s shards hold fewer than one batch of "
                                   f"{self.batch_size} readable samples")


class _Collate:
    """Stack images, tokenise the K texts of every sample, and count what was replaced or fell back."""

    def __init__(self, tokenizer, num_texts: int):
        self.tokenizer, self.num_texts = tokenizer, num_texts

    def __call__(self, items):
        images = torch.stack([img for img, _, _ in items])
        texts, skipped = [], Counter()
        for _, t, skips in items:
            skipped.update(skips)
            rewrites = list(t[1:self.num_texts])
            row = texts_per_image(t[0], rewrites)
            skipped["short_rewrite"] += sum(a != b for a, b in zip(row[1:], rewrites, strict=True))
            texts.extend(row + [t[0]] * (self.num_texts - len(row)))
        tokens = self.tokenizer(texts).view(len(items), self.num_texts, -1)
        return images, tokens, +skipped
