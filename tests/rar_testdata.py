"""RAR test data shared by the extraction and header tests: the archives others made (../shared)
and the members the tests pack themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path("/work/shared/testdata/rar")
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared RAR test archives not present")

CONTENT = {
    "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi": os.urandom(70_000),
    "UCF-101/HandstandPushups/v_HandStandPushups_g01_c01.avi": b"abc" * 20_000,
    "UCF-101/Ünïcode dir/empty.avi": b"",
}
