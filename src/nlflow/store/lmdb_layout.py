"""Proof, from LMDB's on-disk layout, that every value of a store lies inside its file.

Why: py-lmdb touches every page of a value as soon as it is looked up (its ``preload``), before
the caller sees even its length, and LMDB trusts the length stored in the B-tree. One flipped bit
in that length makes a lookup run past the end of the memory-mapped file: SIGBUS, no exception.
Nothing LMDB or py-lmdb offers checks it, so this module reads the tree itself: the newest meta
page, then every branch and leaf page of the main database (a few hundred bytes per thousand
records; the overflow pages holding the videos are never read), with plain file reads that cannot
fault. A value stored on overflow pages must end on a page the environment owns (at most its last
page, and the file is at least that long: checked on opening); an inline value inside its page.

The layout is LMDB 0.9's (py-lmdb bundles 0.9.x), 64-bit: ``mdb.c``'s ``MDB_page``, ``MDB_node``,
``MDB_meta`` and ``MDB_db``. A file with another magic number or version is not checked (None).
"""

from __future__ import annotations

import os
import struct

MDB_MAGIC = 0xBEEFC0DE
MDB_DATA_VERSION = 1
PAGE_HEADER = 16  # mp_pgno (8), mp_pad (2), mp_flags (2), mp_lower (2), mp_upper (2)
NODE_HEADER = 8  # mn_lo, mn_hi (data size, or a child page number with mn_flags), mn_flags, mn_ksize
P_BRANCH, P_LEAF, P_META = 0x01, 0x02, 0x08
F_BIGDATA = 0x01

_PAGE = struct.Struct("<QHHHH")  # pgno, pad, flags, lower, upper
_NODE = struct.Struct("<HHHH")  # lo, hi, flags, ksize
# MDB_meta after the page header: magic, version, address, mapsize, then the free and the main
# MDB_db (pad, flags, depth, branch, leaf, overflow pages, entries, root), last page, txnid.
_META = struct.Struct("<IIQQ" + "IHHQQQQQ" * 2 + "QQ")


class LayoutError(Exception):
    """The B-tree does not describe values inside the file (a damaged store)."""


def unchecked_reason(fd: int) -> str | None:
    """None when the file's meta page is LMDB 0.9's format, else why its tree cannot be checked."""
    magic, version = struct.unpack("<II", os.pread(fd, 8, PAGE_HEADER))
    if (magic, version) != (MDB_MAGIC, MDB_DATA_VERSION):
        return f"LMDB magic {magic:#x} version {version}, not 0.9's {MDB_MAGIC:#x} version {MDB_DATA_VERSION}"
    return None


def check_values_inside(fd: int, page_size: int, last_pgno: int) -> None:
    """Raise LayoutError unless every value of the main database lies on pages 2..``last_pgno``.

    The file must hold those pages (checked before): every read here is then complete.
    """
    stack, seen = [_main_root(fd, page_size)], set()
    while stack:
        pgno = stack.pop()
        if not 2 <= pgno <= last_pgno or pgno in seen:
            raise LayoutError(f"the B-tree points at page {pgno} (pages 2..{last_pgno} exist)")
        seen.add(pgno)
        page = os.pread(fd, page_size, pgno * page_size)
        stored, _, flags, lower, upper = _PAGE.unpack_from(page)
        if stored != pgno or flags & (P_BRANCH | P_LEAF) not in (P_BRANCH, P_LEAF) or not PAGE_HEADER <= lower <= upper <= page_size:
            raise LayoutError(f"page {pgno} is not a valid branch or leaf page")
        for offset in struct.unpack_from(f"<{(lower - PAGE_HEADER) // 2}H", page, PAGE_HEADER):
            if not upper <= offset <= page_size - NODE_HEADER:
                raise LayoutError(f"page {pgno} has a node outside the page")
            lo, hi, node_flags, key_size = _NODE.unpack_from(page, offset)
            if flags & P_BRANCH:
                stack.append(lo | hi << 16 | node_flags << 32)
            else:
                key = page[offset + NODE_HEADER : offset + NODE_HEADER + key_size].decode("ascii", "replace")
                where = f"the value of key {key!r}"
                _check_leaf_value(page, offset + NODE_HEADER + key_size, lo | hi << 16, node_flags, where, page_size, last_pgno)


def _main_root(fd: int, page_size: int) -> int:
    """The main database's root page in the newer of the two meta pages (what LMDB reads)."""
    metas = [_META.unpack(os.pread(fd, _META.size, n * page_size + PAGE_HEADER)) for n in (0, 1)]
    newest = max(metas, key=lambda meta: meta[-1])
    return newest[-3]  # main MDB_db's md_root, before mm_last_pg and mm_txnid


def _check_leaf_value(page: bytes, data: int, size: int, flags: int, where: str, page_size: int, last_pgno: int) -> None:
    """``where`` (a leaf node's value of ``size`` bytes at ``data`` in ``page``) must end inside its
    page, or for an overflow value, on the environment's pages."""
    if not flags & F_BIGDATA:
        if data + size > page_size:
            raise LayoutError(f"{where} ({size} bytes) runs past the end of its page")
        return
    if data + 8 > page_size:
        raise LayoutError(f"{where} has its page number outside the page")
    (first,) = struct.unpack_from("<Q", page, data)
    last = first + (PAGE_HEADER + size - 1) // page_size  # LMDB's OVPAGES
    if not 2 <= first or last > last_pgno:
        raise LayoutError(f"{where} ({size} bytes on pages {first}..{last}) runs past the last page {last_pgno}")
