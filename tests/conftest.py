import os

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
