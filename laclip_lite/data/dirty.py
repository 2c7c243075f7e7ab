"""A small CC3M-like set in the LaCLIP release layout, dirty the way real web data is.

`export_dirty_laclip(out_dir)` writes `train.csv` + `images/*.jpg` + `chatgpt.txt`, `bard.txt`, `mscoco.txt`,
`human.txt` (line-aligned with the CSV's data rows) holding, on purpose:

* CRLF line endings and a header row (`filepath,title`), which the release's reader also tolerates;
* captions quoted because they hold commas and doubled quotes, an unquoted extra comma, a quoted newline,
  unicode (accents, CJK, an emoji), a one-word caption, and a one-word rewrite (falls back to the original);
* unreadable samples: a truncated JPEG, a zero-byte file, a missing image and a row without a caption.

`DIRTY` says what a reader must count: one each of corrupt_image, empty_file, missing_image, bad_row.
Images are ShapeWorld renders saved as JPEG (quality 90), so a model trained on them sees real shapes.
The committed copy is `data_samples/laclip_dirty/` (`data_samples/make_samples.sh`); tests make their own.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from laclip_lite.constants import SOURCES
from laclip_lite.data.shapeworld import ShapeWorld
from laclip_lite.rewrite.shapes import ShapeWorldRewriter

N = 24                          # data rows
DIRTY = {"corrupt_image": 1, "empty_file": 1, "missing_image": 1, "bad_row": 1}
SPECIAL = {                     # data row -> the caption written there (others keep the ShapeWorld caption)
    1: 'a red circle, isolated on white, "vintage" style',
    2: "café crème: a naïve cross — drawn in 東京 🌟",
    3: "circle",
    5: "two lines\r\nin one quoted caption",
}
UNQUOTED_COMMA_ROW = 4          # written by hand without quotes: everything after the first comma is the caption
TRUNCATED, EMPTY, MISSING, NO_CAPTION = 6, 9, 13, 17


def jpeg_bytes(image_chw, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.asarray(image_chw).transpose(1, 2, 0)), "RGB").save(
        buf, format="JPEG", quality=quality)
    return buf.getvalue()


def dirty_captions() -> tuple[list, list[str]]:
    """(images uint8 [N,3,32,32], captions as a reader must return them)."""

    split = ShapeWorld(seed=0, image_size=32).split("train", N)
    captions = [SPECIAL.get(i, c) for i, c in enumerate(split.captions)]
    captions[5] = "two lines in one quoted caption"          # a newline inside a caption becomes a space
    captions[UNQUOTED_COMMA_ROW] = "blue star, small, on a grid"
    return split.images, captions


def export_dirty_laclip(out_dir: str | Path) -> Path:
    """Write the dirty set into `out_dir`; -> the CSV path. Deterministic (byte-identical on every run)."""

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for p in (out / "images").glob("*.jpg"):
        p.unlink()
    images, captions = dirty_captions()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["filepath", "title"])
    for i, caption in enumerate(captions):
        rel = f"images/{i:06d}.jpg"
        if i == NO_CAPTION:
            buf.write(rel + "\r\n")
        elif i == UNQUOTED_COMMA_ROW:
            buf.write(f"{rel},{caption}\r\n")
        else:
            writer.writerow([rel, SPECIAL.get(i, caption)])
        data = jpeg_bytes(images[i])
        if i == TRUNCATED:
            data = data[: len(data) // 2]
        elif i == EMPTY:
            data = b""
        if i != MISSING:
            (out / rel).write_bytes(data)
    csv_path = out / "train.csv"
    csv_path.write_bytes(buf.getvalue().encode("utf-8"))
    result = ShapeWorldRewriter(list(SOURCES)).rewrite_batch(captions, seed=0)
    for variant, texts in result.texts.items():
        texts = [" ".join(t.split()) or c for t, c in zip(texts, captions, strict=True)]
        if variant == "bard":
            texts[0] = "triangle"                            # a one-word rewrite: training uses the original
        (out / f"{variant}.txt").write_bytes("".join(t + "\r\n" for t in texts).encode("utf-8"))
    return csv_path
