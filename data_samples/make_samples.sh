#!/usr/bin/env bash
# Regenerate data_samples/{hf,wds,laclip,eval} with the kit's own exporters (run from the repository root).
# ShapeWorld(seed=0, image_size=32) "train" split, first 48 samples, rewritten by the `shapes` stand-in rewriter.
# Deterministic: rerunning gives the same captions, images and rewrites. data_samples/web_captions.txt is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
LACLIP_LITE="${LACLIP_LITE:-.venv/bin/laclip-lite}"
"$LACLIP_LITE" export --format all --out data_samples --n 48 --rewriter shapes
# The dirty CC3M-like set (CRLF, header, quoted commas/quotes/newline, unicode, one-word caption and rewrite,
# a truncated JPEG, a zero-byte file, a missing image, a row without a caption): laclip_lite/data/dirty.py.
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -c "from laclip_lite.data.dirty import export_dirty_laclip; export_dirty_laclip('data_samples/laclip_dirty')"
# Evaluation layouts (laclip_lite.data.eval_layouts): ShapeWorld(seed=0) train + test, 48 images each, shape task,
# as an ImageFolder and as CLIP_benchmark webdataset folders (classification and retrieval); and shapes drawn by
# another renderer (data_samples/draw_shapes.py, PIL) as ImageFolders.
"$LACLIP_LITE" export --format imagefolder --task shape --split train,test --n 48 --out data_samples/eval/imagefolder
"$LACLIP_LITE" export --format clip_benchmark --task shape --split train,test --n 48 --shards 2 \
    --out data_samples/eval/clip_benchmark
"$LACLIP_LITE" export --format clip_benchmark --task retrieval --split test --n 48 --shards 2 \
    --out data_samples/eval/clip_benchmark_retrieval
"$PYTHON" data_samples/draw_shapes.py --out data_samples/eval
