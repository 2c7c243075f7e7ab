"""The suite never touches the user's caches: conftest points every cache at this session's temp folder."""
import os
from pathlib import Path

from tests.conftest import CACHE_VARIABLES


def test_every_cache_is_in_the_session_temp_folder(tmp_path_factory):
    base = Path(tmp_path_factory.getbasetemp()).resolve()
    from laclip_lite.utils import cache_dir

    assert base in cache_dir().resolve().parents
    for var in CACHE_VARIABLES:
        assert base in Path(os.environ[var]).resolve().parents, var
