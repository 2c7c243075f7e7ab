"""Issue 22: a run either does what its plan says, or stops before step 0 and says why.

Each bad case checks the exit code (CLI) or the exception, the one-line message, and that nothing is left behind
that a later run would mistake for a result."""
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from laclip_lite.cli import main
from laclip_lite.config import ConfigError, build_config
from laclip_lite.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
LAYOUTS = {"csv": SAMPLES / "laclip" / "train.csv", "wds": SAMPLES / "wds", "hf": SAMPLES / "hf"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def _eda_folder(capsys, source: Path, out: Path) -> Path:
    code, _, err = _cli(capsys, "rewrite", "--input", source, "--out", out, "--rewriter", "eda", "--no-progress")
    assert code == 0, err
    return out


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# -- 1. rewrites attach to every source ------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["csv", "wds", "hf"])
def test_rewrites_dir_attaches_to_every_layout_by_the_one_rule(tmp_path, capsys, layout):
    """`rewrite --input SOURCE` then `data.rewrites_dir`: line i belongs to CSV row i / HF row i / the tar sample
    whose key is line i of keys.txt; the data's own rewrites (files beside the CSV, tar JSON, HF columns) are
    not used."""
    from laclip_lite.train import build_train_data

    rw = _eda_folder(capsys, LAYOUTS[layout], tmp_path / "rw")
    assert (rw / "keys.txt").exists() == (layout == "wds")
    data = build_train_data(build_config("test", [f"data.source={LAYOUTS[layout]}", f"data.rewrites_dir={rw}",
                                                  "train.policy=laclip", "train.batch_size=8"]))
    assert data.variants == ["eda1", "eda2", "eda3", "eda4"]
    assert all(str(rw) in f for f in data.info["rewrite_files"].values())
    assert set(data.info["identical_to_caption"]) == set(data.variants)
    source, eda2 = data.pairs.dataset.source, _lines(rw / "eda2.txt")
    if layout == "wds":
        keys = _lines(rw / "keys.txt")
        records = list(source.shard_records(source.shards[1], source.stats))     # the second shard: keys 24..47
        assert records and all(r.rewrites["eda2"] == eda2[keys.index(r.key)] for r in records)
    else:
        assert all(source[i].rewrites["eda2"] == eda2[i] for i in (0, 5, 47))
    assert all("chatgpt" not in r for r in (source[0].rewrites if layout != "wds" else records[0].rewrites,))


def test_a_rewrite_folder_made_from_other_captions_stops(tmp_path, capsys):
    """The CSV edited after `laclip-lite rewrite` ran: the rewrite lines no longer belong to their rows."""
    from laclip_lite.train import build_train_data

    csv_path = tmp_path / "train.csv"
    shutil.copy(LAYOUTS["csv"], csv_path)
    rw = _eda_folder(capsys, csv_path, tmp_path / "rw")
    rows = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(rows[1:] + rows[:1]) + "\n")          # the same rows, rotated by one
    over = [f"data.source={csv_path}", f"data.image_root={LAYOUTS['csv'].parent}", f"data.rewrites_dir={rw}",
            "train.policy=laclip", "train.batch_size=8"]
    with pytest.raises(DataError, match=r"made from other captions: 48 of 48 samples differ \(sample 0"):
        build_train_data(build_config("test", over))


def test_a_shapeworld_rewrites_dir_of_another_world_stops(tmp_path):
    from laclip_lite.train import build_train_data

    over = ["train.policy=laclip", "data.augment=shapes", f"data.rewrites_dir={tmp_path / 'rw'}"]
    assert build_train_data(build_config("test", over)).variants        # writes the folder for world 0
    with pytest.raises(DataError, match=r"rw: the rewrites were made from other captions: 64 of 64 samples differ"):
        build_train_data(build_config("test", over + ["data.world_seed=1"]))


# -- 2. refuse what would be a lie -----------------------------------------------------------------------------
def _without_rewrites(layout: str, tmp_path: Path) -> Path:
    """The sample data of `layout` with its own rewrites taken out."""
    if layout == "csv":
        path = tmp_path / "bare" / "train.csv"
        path.parent.mkdir()
        shutil.copy(LAYOUTS["csv"], path)
        shutil.copytree(LAYOUTS["csv"].parent / "images", path.parent / "images")
        return path
    if layout == "wds":
        folder = tmp_path / "bare_wds"
        folder.mkdir()
        for shard in sorted(LAYOUTS["wds"].glob("*.tar")):
            with tarfile.open(shard) as src, tarfile.open(folder / shard.name, "w") as dst:
                for member in src.getmembers():
                    if not member.name.endswith(".json"):
                        dst.addfile(member, io.BytesIO(src.extractfile(member).read()))
        return folder
    import datasets
    ds = datasets.load_from_disk(str(LAYOUTS["hf"]))
    ds.remove_columns(["chatgpt", "bard", "mscoco", "human"]).save_to_disk(str(tmp_path / "bare_hf"))
    return tmp_path / "bare_hf"


@pytest.mark.parametrize("layout", ["csv", "wds", "hf"])
def test_laclip_with_no_rewrite_in_use_stops_before_step_0(tmp_path, capsys, layout):
    source = _without_rewrites(layout, tmp_path)
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--preset", "test", "--policy", "laclip", "--set", f"data.source={source}",
                        "--set", "train.batch_size=8", "--out", out, "--no-progress")
    line = _one_error_line(err)
    assert code == 2 and f"train.policy=laclip on {source}: no rewrites in use (found none" in line
    assert f"laclip-lite rewrite --input {source} --out DIR" in line and "data.rewrites_dir=DIR" in line
    assert not out.exists()


def test_the_stand_in_on_web_captions_stops(tmp_path, capsys):
    """data.augment=shapes on captions outside ShapeWorld: every 'rewrite' is a copy of its caption."""
    images = sorted((LAYOUTS["csv"].parent / "images").glob("*.png"))
    captions = [c for c in _lines(SAMPLES / "web_captions.txt") if c.strip()]
    csv_path = tmp_path / "web.csv"                   # CC3M-like captions, no shipped rewrites
    csv_path.write_text("".join(f"{images[i % len(images)]},{json.dumps(c)}\n" for i, c in enumerate(captions)))
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--preset", "test", "--policy", "laclip", "--set", f"data.source={csv_path}",
                        "--set", "data.augment=shapes", "--set", "train.batch_size=8", "--out", out, "--no-progress")
    line = _one_error_line(err)
    assert code == 2 and "rewrites identical to their caption: chatgpt" in line and "(100%)" in line
    assert "above data.max_identical=0.5" in line and "stand-in finds nothing to rewrite" in line
    assert not out.exists()


def test_mt_with_one_text_per_image_is_refused_by_validate(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--preset", "test", "--policy", "mt", "--out", out)
    line = _one_error_line(err)
    assert code == 2 and "train.policy=mt needs rewrites, but data.augment=none on ShapeWorld" in line
    assert not out.exists()
    with pytest.raises(ConfigError, match="data.num_rewrites=0 leaves one text per image"):
        build_config("test", ["train.policy=laclip", "data.augment=shapes", "data.num_rewrites=0"])
    build_config("test", ["train.policy=mt", "data.augment=shapes", "data.num_rewrites=1"])     # K = 2 is fine


# -- 4. schedules and resumes ----------------------------------------------------------------------------------
def test_eval_every_is_independent_of_log_every(tmp_path):
    from laclip_lite.train import train

    train(build_config("test", ["train.steps=6", "train.log_every=2", "train.eval_every=3"]), tmp_path / "run",
          progress=False, evaluate_at_end=False)
    rows = [json.loads(x) for x in _lines(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [2, 3, 4, 6]
    assert [r["step"] for r in rows if "val/color_shape_top1" in r] == [3, 6]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4, 6]


def _short_run(tmp_path, *over, name="run"):
    from laclip_lite.train import train

    out = tmp_path / name
    train(build_config("test", ["train.steps=4", "train.log_every=2", *over]), out, progress=False,
          evaluate_at_end=False)
    return out


def test_resume_with_a_cut_config_yaml_stops_and_leaves_it(tmp_path, capsys):
    run = _short_run(tmp_path)
    text = (run / "config.yaml").read_text()
    cut = text[:text.index("train:")]                   # cut at a line boundary: train defaults would load
    (run / "config.yaml").write_text(cut)
    code, _, err = _cli(capsys, "train", "--out", run, "--resume", "--set", "train.steps=8")
    line = _one_error_line(err)
    assert code == 2 and "config.yaml differs from the config checkpoint.pt recorded" in line
    assert "train.batch_size: 16 -> 256" in line
    assert (run / "config.yaml").read_text() == cut and torch.load(run / "checkpoint.pt")["step"] == 4


def test_eval_of_a_run_with_a_cut_config_yaml_stops(tmp_path):
    from laclip_lite.runs import load_run

    run = _short_run(tmp_path)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text[:text.index("data:")])
    with pytest.raises(DataError, match=r"config.yaml differs from the config its checkpoint recorded .*"
                                        r"data.test_size: 64 -> 1000"):
        load_run(run, device="cpu")


def test_resume_on_another_world_size_stops(tmp_path):
    from laclip_lite.train import train

    run = _short_run(tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["world_size"] = 2                             # as a 2-rank run saves it
    torch.save(state, run / "checkpoint.pt")
    with pytest.raises(DataError, match=r"world size: 2 -> 1 \(run it with torchrun --nproc_per_node 2\)"):
        train(build_config("test", ["train.steps=4", "train.log_every=2"]), run, resume=True, progress=False)


def test_resume_after_the_data_changed_stops_and_keeps_the_tokenizer(tmp_path):
    from laclip_lite.train import train

    csv_path = tmp_path / "train.csv"
    shutil.copy(LAYOUTS["csv"], csv_path)
    over = [f"data.source={csv_path}", f"data.image_root={LAYOUTS['csv'].parent}", "train.batch_size=8"]
    run = _short_run(tmp_path, *over)
    tokenizer = (run / "tokenizer.json").read_bytes()
    csv_path.write_text(csv_path.read_text().replace("a triangle at the top", "a yellow triangle high up"))
    with pytest.raises(DataError, match=r"data_fingerprint: \w+ -> \w+ \(48 -> 48 captions\)"):
        train(build_config("test", ["train.steps=8", "train.log_every=2", *over]), run, resume=True, progress=False,
              replan=["train.steps"])
    assert (run / "tokenizer.json").read_bytes() == tokenizer


def test_an_explicit_override_replans_and_says_so(tmp_path, capsys):
    run = _short_run(tmp_path)
    code, out, err = _cli(capsys, "train", "--out", run, "--resume", "--set", "train.steps=6")
    assert code == 0, err
    assert "resume re-plans (given on the command line): train.steps: 4 -> 6" in err
    record = json.loads((run / "run.json").read_text())
    assert record["replanned"] == ["train.steps: 4 -> 6"] and record["schedule"]["steps"] == 6
    assert json.loads(out.splitlines()[-1])["step"] == 6


def test_only_rank_0_prints_the_result(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")                      # what torchrun sets on the second process
    code, out, _ = _cli(capsys, "train", "--preset", "test", "--set", "train.steps=2", "--out", tmp_path / "run",
                        "--no-progress")
    assert code == 0 and out == ""


# -- 3. run.json ---------------------------------------------------------------------------------------------
def test_run_json_says_what_really_ran(tmp_path, capsys):
    run = _short_run(tmp_path, "train.policy=laclip", "data.augment=shapes", "train.eval_every=2")
    record = json.loads((run / "run.json").read_text())
    assert record["policy"] == "laclip" and record["source"]["images"] == 64
    assert record["texts"]["per_image"] == 5 and record["texts"]["variants"] == ["chatgpt", "bard", "mscoco", "human"]
    assert all(Path(p).name == f"{v}.txt" for v, p in record["texts"]["origin_files"].items())
    assert record["texts"]["identical_to_caption"]["chatgpt"]["share"] < 0.5
    assert record["batch"] == {"world_size": 1, "per_gpu": 16, "accum_steps": 1, "global": 16,
                               "accum_mode": "micro", "negatives_per_loss": 15}
    assert record["schedule"]["steps"] == 4 and record["schedule"]["epochs"] == 1.0
    assert record["eval"]["every_steps"] == 2 and record["tokenizer"]["kind"] == "bpe"
    assert record["versions"]["torch"] == torch.__version__


# -- 3/4. compare and ablate reuse a finished run only when its config matches ------------------------------------
def test_a_finished_experiment_is_reused_only_for_the_same_config(tmp_path):
    from laclip_lite.experiments import run_experiment

    def cfg(*over):
        return build_config("test", ["train.steps=2", *over])

    first = run_experiment(cfg(), tmp_path / "arm", template_sets=("default",), progress=False)
    assert first["plan.texts"] == "the original caption only" and first["plan.global_batch"] == 16   # arm columns
    assert run_experiment(cfg(), tmp_path / "arm", template_sets=("default",), progress=False) == first
    with pytest.raises(ConfigError, match=r"holds a finished run of another config \(model.vision: 'vit' -> "
                                          r"'resnet'; train.steps: 2 -> 3\)"):
        run_experiment(cfg("model.vision=resnet", "train.steps=3"), tmp_path / "arm", progress=False)


# -- 5. templates and names ----------------------------------------------------------------------------------
def test_template_files_text_json_list_and_clip_benchmark(tmp_path):
    from laclip_lite.templates import get_templates

    (tmp_path / "t.txt").write_text("# mine\na photo of a {c}.\n\nart of the {}.\n")
    assert get_templates(tmp_path / "t.txt") == ["a photo of a {}.", "art of the {}."]
    (tmp_path / "imagenet_templates.json").write_text(json.dumps(["a bad photo of a {}.", "a {} in a video game."]))
    assert get_templates(tmp_path / "imagenet_templates.json") == ["a bad photo of a {}.", "a {} in a video game."]
    bench = tmp_path / "zeroshot.json"
    bench.write_text(json.dumps({"cifar10": ["a photo of a {c}."], "imagenet1k": ["itap of a {c}.", "a {c}."]}))
    assert get_templates(f"{bench}#imagenet1k") == ["itap of a {}.", "a {}."]
    with pytest.raises(DataError, match=r"zeroshot.json: several datasets \(keys: cifar10, imagenet1k\)"):
        get_templates(bench)


@pytest.mark.parametrize("body, line, what", [
    (json.dumps(["a {}.", "a {} of {}."], indent=1), 3, "has 2 placeholders"),
    ("a photo of a {}.\nno placeholder here\n", 2, "has no '{}'"),
    ("a {c} and a {c}\n", 1, "has 2 placeholders"),
])
def test_a_template_with_other_than_one_placeholder_names_file_and_line(tmp_path, body, line, what):
    from laclip_lite.templates import get_templates

    path = tmp_path / ("t.json" if body.startswith("[") else "t.txt")
    path.write_text(body)
    with pytest.raises(DataError, match=rf"{path.name}:{line}: template .* {what}"):
        get_templates(path)


def test_file_eval_sets_never_log_under_the_kits_own_prefixes():
    from laclip_lite.data.eval_layouts import parse_specs

    assert [s.label for s in parse_specs(["data/test.csv", "data/val", "coco/karpathy.json"])] == \
        ["eval_test", "eval_val", "karpathy"]
    with pytest.raises(ConfigError, match="name 'test' of x.csv is one of the kit's own metric prefixes"):
        parse_specs([{"path": "x.csv", "name": "test"}])


# -- 6. rewrite jobs that cannot mix ----------------------------------------------------------------------------
def test_a_second_rewrite_job_with_other_settings_stops(tmp_path, capsys):
    captions = tmp_path / "c.txt"
    captions.write_text("a red circle on white\nblue star at the top left\n")
    out = tmp_path / "rw"
    assert _cli(capsys, "rewrite", "--input", captions, "--out", out, "--rewriter", "eda", "--no-progress")[0] == 0
    before = {p: p.read_bytes() for p in out.glob("*.txt")}
    code, _, err = _cli(capsys, "rewrite", "--input", captions, "--out", out, "--rewriter", "eda", "--seed", "1",
                        "--no-progress")
    line = _one_error_line(err)
    assert code == 2 and "holds another rewrite job" in line and "seed: 0 -> 1" in line and "new --out" in line
    assert len(list((out / "cache").iterdir())) == 1 and {p: p.read_bytes() for p in out.glob("*.txt")} == before


def test_merge_refuses_a_folder_with_several_jobs_unless_told_which(tmp_path, capsys):
    from laclip_lite.config import RewriteConfig
    from laclip_lite.rewrite.job import jobs_in, run_shard

    captions = ["a red circle on white", "blue star at the top left", "green square"]
    for seed in (0, 1):                                  # written by the API, which does not refuse
        run_shard(captions, tmp_path / "rw", RewriteConfig(rewriter="eda", seed=seed), 0, 1, progress=False)
    code, _, err = _cli(capsys, "rewrite", "--merge", tmp_path / "rw")
    line = _one_error_line(err)
    assert code == 2 and "the folder holds 2 rewrite jobs" in line and "--job FINGERPRINT" in line
    assert not (tmp_path / "rw" / "eda1.txt").exists()
    fp = jobs_in(tmp_path / "rw")[1]["fingerprint"]
    assert _cli(capsys, "rewrite", "--merge", tmp_path / "rw", "--job", fp[:8])[0] == 0
    assert json.loads((tmp_path / "rw" / "report.json").read_text())["fingerprint"] == fp


def test_rewrite_input_reads_tar_shards_with_trainings_skip_rules(tmp_path, capsys):
    from laclip_lite.rewrite.inputs import read_input

    folder = _without_rewrites("wds", tmp_path)
    with tarfile.open(folder / "shard-000000.tar", "a") as tar:        # a sample without caption: training skips it
        data = b"\x89PNG not really"
        info = tarfile.TarInfo("lonely.png")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    read = read_input(folder)
    assert len(read.texts) == 48 and read.keys[:2] == ["000000", "000001"] and "lonely" not in read.keys
    assert read.skipped == {"missing_caption": 1} and "1 sample(s) training skips, left out" in read.note()


# -- exactness on tar / HF sources with rewrites --------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["wds", "hf"])
def test_resume_is_exact_on_tar_and_hf_with_a_rewrites_dir(tmp_path, capsys, layout):
    from laclip_lite.train import Trainer, train

    rw = _eda_folder(capsys, LAYOUTS[layout], tmp_path / "rw")
    over = ["train.steps=6", "train.ckpt_every=3", "train.log_every=1", "train.policy=laclip", "train.batch_size=8",
            f"data.source={LAYOUTS[layout]}", f"data.rewrites_dir={rw}"]
    train(build_config("test", over), tmp_path / "full", progress=False, evaluate_at_end=False)
    first = Trainer(build_config("test", over), tmp_path / "part", progress=False, evaluate_at_end=False)
    for _ in range(4):                                   # one step past the step-3 checkpoint, then "crash"
        first.train_step()
        if first.step == 3:
            first.save()
    train(build_config("test", over), tmp_path / "part", resume=True, progress=False, evaluate_at_end=False)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
