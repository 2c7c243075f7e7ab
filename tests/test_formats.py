"""The one format layer (`data/formats.py`): layout detection, image decoding, skip counts, tar sample members."""
import ast
import io
from pathlib import Path

from PIL import Image

from laclip_lite.data import formats
from laclip_lite.data.formats import ReadStats, decode_image, detect, image_ext, oversized

PACKAGE = Path(__file__).resolve().parents[1] / "laclip_lite"


def _png(size=(4, 4), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_detect_picks_the_first_matching_layout_of_among(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "0.tar").write_bytes(b"")
    (tmp_path / "csvdir").mkdir()
    (tmp_path / "csvdir" / "train.csv").write_text("a.jpg,x\n")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "state.json").write_text("{}")
    (tmp_path / "cb" / "test").mkdir(parents=True)
    (tmp_path / "cb" / "test" / "0.tar").write_bytes(b"")
    (tmp_path / "if" / "cat").mkdir(parents=True)
    (tmp_path / "if" / "cat" / "1.png").write_bytes(_png())
    (tmp_path / "k.json").write_text("{}")
    (tmp_path / "c.jsonl").write_text("{}")
    (tmp_path / "notes.txt").write_text("a\n")
    train = ("hf", "wds", "laclip")
    assert detect(tmp_path / "shards", train) == "wds"
    assert detect(tmp_path / "csvdir", train) == "laclip"
    assert detect(tmp_path / "csvdir" / "train.csv", train) == "laclip"
    assert detect(tmp_path / "hf", train) == "hf"
    assert detect("hf:some/name", train) == "hf"
    assert detect(str(tmp_path / "shards" / "*.tar"), train) == "wds"
    assert detect(tmp_path / "notes.txt", train) is None
    assert detect(tmp_path / "nowhere", train) is None
    evals = ("captions_csv", "karpathy_json", "clip_benchmark", "imagefolder")
    assert detect(tmp_path / "cb", evals) == "clip_benchmark"
    assert detect(tmp_path / "if", evals) == "imagefolder"
    assert detect(tmp_path / "k.json", evals) == "karpathy_json"
    assert detect(tmp_path / "csvdir", evals) is None                      # a CSV layout is a file for evaluation
    rewrite = ("wds", "hf", "captions_csv", "jsonl", "text")
    assert detect(tmp_path / "c.jsonl", rewrite) == "jsonl"
    assert detect(tmp_path / "notes.txt", rewrite) == "text"
    assert detect(tmp_path / "cb", rewrite) is None


def test_decode_image_counts_each_reason_and_returns_rgb(tmp_path):
    stats = ReadStats("t")
    assert decode_image(_png(mode="L"), stats, "a", "a.png").mode == "RGB"
    (tmp_path / "ok.png").write_bytes(_png())
    assert decode_image(tmp_path / "ok.png", stats, "b", "ok.png").size == (4, 4)
    assert decode_image(b"", stats, "c", "c.png") is None
    assert decode_image(tmp_path / "missing.png", stats, "d", "missing.png") is None
    assert decode_image(_png()[:20], stats, "e", "e.png") is None
    assert decode_image(b"not an image", None) is None                     # no stats: still None, nothing raised
    assert dict(stats.skipped) == {"empty_file": 1, "missing_image": 1, "corrupt_image": 1}


def test_read_stats_merge_adds_counts_and_keeps_three_examples_per_reason():
    a, b = ReadStats("a"), ReadStats("b")
    a.read, b.read = 5, 7
    for i in range(2):
        a.skip("corrupt_image", f"a{i}")
    for i in range(3):
        b.skip("corrupt_image", f"b{i}")
    b.skip("missing_label", "b:key")
    a.merge(b)
    assert a.read == 12 and dict(a.skipped) == {"corrupt_image": 5, "missing_label": 1} and a.count == 6
    assert a.examples == {"corrupt_image": ["a0", "a1", "b0"], "missing_label": ["b:key"]}
    assert a.reasons() == "5 corrupt_image (e.g. a0; a1; b0), 1 missing_label (e.g. b:key)"


def test_a_tar_sample_image_member_and_oversized_members():
    assert image_ext({"txt": b"x", "webp": b"1", "png": b"2"}) == "png"       # the first of IMAGE_EXTS it has
    assert image_ext({"txt": b"x", "json": b"{}"}) is None
    assert oversized({"png": None, "txt": b"x", "json": None}) == ["json", "png"]
    assert formats.IMAGE_EXTS[0] == ".png"


def test_the_data_layer_does_not_import_rewrite():
    for path in (PACKAGE / "data").glob("*.py"):
        if path.name == "dirty.py":          # the sample-set writer (data_samples/laclip_dirty), not the data path
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n.startswith("laclip_lite.rewrite") for n in names), f"{path.name} imports {names}"
