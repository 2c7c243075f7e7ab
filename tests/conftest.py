import _posixsubprocess
import contextlib
import os
import subprocess

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# Every cache the kit (or a library it drives) writes to, pointed at one temporary folder per test session, so
# the suite never reads a stale cache or writes into the user's ~/.cache. The Hugging Face libraries read their
# variables when first imported, which happens inside tests (no test module imports them at collection time);
# subprocesses (papermill kernels, torchrun workers) inherit the environment.
CACHE_VARIABLES = {
    "LACLIP_LITE_CACHE": "laclip_lite",   # laclip_lite.utils.cache_dir(): tokenizers, rewrite caches
    "HF_HOME": "huggingface",             # transformers / huggingface_hub
    "HF_DATASETS_CACHE": "datasets",      # datasets' Arrow caches
}


@pytest.fixture(autouse=True, scope="session")
def _caches_in_a_temp_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in CACHE_VARIABLES.items():
            mp.setenv(var, str(root / sub))
        yield root


@pytest.fixture(autouse=True, scope="session")
def _one_thread_from_the_start():
    """One torch thread before any fixture builds a model (module-scoped tiny LMs included)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    import torch

    torch.set_num_threads(1)  # tiny models: one thread is faster than two fighting over 2 shared cores
    torch.manual_seed(0)
    yield


# ---------------------------------------------------------------------------------------------------------
# The fast tier: `make test-fast` (pytest --fast) runs every test not marked `slow`. A test is slow when it starts
# another process (a Jupyter kernel, papermill, torchrun, a CLI run, a DataLoader worker): marked in its file with
# @pytest.mark.slow, or listed below by node-id prefix. The guard keeps the marking true: a test that is not slow
# and starts a process fails (in `make test` too) with a message naming this list.

SPAWNING = (   # node-id prefixes of tests that start processes (file-wide where every test does)
    "tests/test_distributed.py::",                       # torchrun
    "tests/test_train_distributed.py::",                 # torchrun
    "tests/test_accumulate.py::test_global_accumulation_on_two_ranks_equals_the_full_batch",
    "tests/test_experiments.py::test_run_experiment_under_torchrun_reads_the_run_folder_back",
    "tests/test_experiments.py::test_runs_start_dearest_first_and_results_keep_their_order",   # runs in processes
    "tests/test_gpus.py::test_each_worker_keeps_one_gpu",
    "tests/test_gpus.py::test_sweep_gpus_gives_each_notebook_its_own_device",            # papermill
    "tests/test_notebooks.py::test_bad_parameter_stops_in_the_first_cell_after_the_parameters",   # papermill
    "tests/test_notebooks.py::test_explorer_gives_widgets_when_interactive_and_figures_when_not",  # a kernel
    "tests/test_eval_training.py::test_sweep_aggregate_over_file_data_runs",             # papermill
    "tests/test_eval_training.py::test_eval_cli_scores_a_file_data_run_on_its_eval_datasets_and_a_suite",   # CLI
    "tests/test_schedule.py::test_cli_dry_run_prints_the_derived_steps",                 # CLI
    "tests/test_train.py::test_cli_kill_and_resume",                                     # CLI, both tests
    "tests/test_preemption.py::test_sigterm_checkpoints_and_resume_auto_gives_bit_identical_weights",   # CLI
    "tests/test_dirty_data.py::test_each_sample_gets_its_own_augmentation_in_any_worker",   # DataLoader workers
    "tests/test_eval_layouts.py::test_unreadable_images_are_skipped_and_counted",        # DataLoader workers
    "tests/test_export_readers.py::test_real_dataloader_workers",                        # DataLoader workers
    "tests/test_faults.py::test_a_second_writer_stops_naming_the_holder_and_a_killed_holder_frees_the_folder",
    "tests/test_faults.py::test_a_killed_holders_forked_children_are_waited_for",
    "tests/test_faults.py::test_pool_workers_die_when_their_parent_is_killed",
    "tests/test_faults.py::test_stopping_early_stops_the_pool_at_once",
    "tests/test_faults.py::test_a_stopped_rank_ends_the_job_naming_it",
    "tests/test_traps.py::test_trap[train-out-in-use]",                                  # a holder process
    "tests/test_traps.py::test_trap[compare-out-in-use]",
    "tests/test_traps.py::test_trap[rewrite-out-in-use]",
)


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="the fast tier: skip tests marked slow (those that start kernels or subprocesses)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SPAWNING):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--fast"):
        keep = [item for item in items if item.get_closest_marker("slow") is None]
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("slow")])
        items[:] = keep


class SpawnedAProcess(RuntimeError):
    """A test not marked slow started a process."""


def _refuse(what, nodeid, seen):
    def refuse(*args, **kwargs):
        seen.append(what)
        raise SpawnedAProcess(f"{nodeid} starts a process ({what}) but is not marked slow: add "
                              "@pytest.mark.slow or its node id to SPAWNING in tests/conftest.py")
    return refuse


def _git_or(fork_exec, refuse):
    """Allow `git` (runs.git_commit's `git rev-parse HEAD` for run.json takes milliseconds); refuse the rest."""
    def start(args, *rest, **kwargs):
        if args and os.path.basename(os.fsdecode(args[0])) == "git":
            return fork_exec(args, *rest, **kwargs)
        return refuse(args, *rest, **kwargs)
    return start


@contextlib.contextmanager
def _no_processes(item):
    """Every way Python starts a process (subprocess, multiprocessing, os.fork/posix_spawn) fails inside."""
    if item.get_closest_marker("slow") is not None:
        yield
        return
    seen: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_posixsubprocess, "fork_exec", _refuse("fork_exec", item.nodeid, seen))   # multiprocessing
        if hasattr(subprocess, "_fork_exec"):                                                 # subprocess
            mp.setattr(subprocess, "_fork_exec", _git_or(subprocess._fork_exec,
                                                         _refuse("subprocess", item.nodeid, seen)))
        for name in ("fork", "posix_spawn", "posix_spawnp"):
            if hasattr(os, name):
                mp.setattr(os, name, _refuse(f"os.{name}", item.nodeid, seen))
        yield
    if seen:   # the test may have caught the error: fail it anyway
        pytest.fail(f"{item.nodeid} starts a process ({seen[0]}) but is not marked slow: add @pytest.mark.slow "
                    "or its node id to SPAWNING in tests/conftest.py", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _no_processes(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _no_processes(item):
        return (yield)
