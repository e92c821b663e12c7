"""RAR test data shared by the extraction and header tests: the archives others made (../shared)
and the members the tests pack themselves."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from nlflow.archives.rar_headers import read_vint

SHARED = Path("/work/shared/testdata/rar")
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared RAR test archives not present")

CONTENT = {
    "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi": os.urandom(70_000),
    "UCF-101/HandstandPushups/v_HandStandPushups_g01_c01.avi": b"abc" * 20_000,
    "UCF-101/Ünïcode dir/empty.avi": b"",
}


def patch_rar5_name(raw: bytes, old: bytes, new: bytes) -> bytes:
    """Rename a member in RAR5 bytes and fix that header's CRC (rars refuses to write such names)."""
    assert len(old) == len(new)
    data = bytearray(raw)
    offset = 8
    while offset < len(data):
        size, pos = read_vint(data, offset + 4)
        header_end = pos + size
        where = data.find(old, pos, header_end)
        if where >= 0:
            data[where : where + len(old)] = new
            data[offset : offset + 4] = zlib.crc32(bytes(data[offset + 4 : header_end])).to_bytes(4, "little")
            return bytes(data)
        _type, p = read_vint(data, pos)
        flags, p = read_vint(data, p)
        if flags & 1:
            _extra, p = read_vint(data, p)
        data_size = read_vint(data, p)[0] if flags & 2 else 0
        offset = header_end + data_size
    raise AssertionError("name not found")
