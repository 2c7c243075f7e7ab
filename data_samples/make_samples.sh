#!/usr/bin/env bash
# Regenerate data_samples/{hf,wds,laclip} with the kit's own exporter (run from the repository root).
# ShapeWorld(seed=0, image_size=32) "train" split, first 48 samples, rewritten by the `shapes` stand-in rewriter.
# Deterministic: rerunning gives the same captions, images and rewrites. data_samples/web_captions.txt is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
LACLIP_LITE="${LACLIP_LITE:-.venv/bin/laclip-lite}"
"$LACLIP_LITE" export --format all --out data_samples --n 48 --rewriter shapes
