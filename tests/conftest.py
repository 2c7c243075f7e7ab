import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
