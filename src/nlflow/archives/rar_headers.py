"""List the members of a RAR archive by walking its block headers, reading nothing but the headers.

``rars.RarFile`` reads the whole archive into memory to list it (measured: 292 MB of heap for a
300 MB archive, docs/scale.md), which for UCF101.rar would be 6.5 GB. Extraction needs the
listing first (every name and link is checked before anything is written), so this module reads
the headers of the RAR 1.5-4.x format (UCF-101's archive dates from 2012) and of RAR 5, seeking over
each member's data. Anything it does not read (encrypted headers, a member whose size is unknown,
a link target stored compressed, a header that fails its CRC) raises :class:`Unlisted`; the caller
then lists with rars, which reads the whole file but also understands every variant and reports
damage its own way.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

RAR4_MAGIC = b"Rar!\x1a\x07\x00"
RAR5_MAGIC = b"Rar!\x1a\x07\x01\x00"
UNIX_HOSTS = {"rar4": 3, "rar5": 1}
_MAX_HEADER = 2 << 20  # a header is a few hundred bytes; more is damage, not a header to read


class Unlisted(Exception):
    """This archive's headers are not read here; list it another way."""


@dataclass(frozen=True)
class RarMember:
    name: str  # as stored (RAR4 names may use backslashes)
    is_dir: bool
    size: int
    crc: int | None  # CRC-32 of the content; None when the archive keeps none (RAR5 may keep BLAKE2)
    host_os: int
    attributes: int
    link_kind: str | None  # "symlink" or "hardlink" (RAR5 redirections), else None
    link_target: str | None
    split_before: bool  # the data continues from the previous volume
    split_after: bool  # ... and in the next one


@dataclass(frozen=True)
class RarListing:
    members: list[RarMember]
    is_volume: bool
    has_next_volume: bool | None  # None when the archive has no end block saying so


def list_rar(path: str | os.PathLike) -> RarListing:
    """Members of one RAR file (one volume of a set), in archive order; :class:`Unlisted` when the
    headers are not read here."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        try:
            if head.startswith(RAR5_MAGIC):
                return _list_rar5(handle, len(RAR5_MAGIC))
            if head.startswith(RAR4_MAGIC):
                return _list_rar4(handle, len(RAR4_MAGIC))
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
            raise Unlisted(f"unreadable header ({exc})") from None
    raise Unlisted("not a RAR 1.5-5 archive")


def _read_exact(handle: BinaryIO, size: int) -> bytes:
    if not 0 <= size <= _MAX_HEADER:
        raise Unlisted(f"implausible header size {size}")
    data = handle.read(size)
    if len(data) != size:
        raise Unlisted("the archive ends inside a header")
    return data


# ---------------------------------------------------------------- RAR 5


def read_vint(data: bytes, pos: int) -> tuple[int, int]:
    """A RAR5 variable-length integer at ``pos``: (value, position after it)."""
    value = shift = 0
    for _ in range(10):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
    raise ValueError("bad vint")


def _list_rar5(handle: BinaryIO, offset: int) -> RarListing:
    members: list[RarMember] = []
    is_volume = False
    while True:
        handle.seek(offset)
        prefix = handle.read(4 + 3)  # CRC-32, then the header size (a vint of at most 3 bytes)
        if len(prefix) < 5:
            return RarListing(members, is_volume, None)
        head_size, pos = read_vint(prefix, 4)
        handle.seek(offset + pos)
        header = _read_exact(handle, head_size)
        (stored_crc,) = struct.unpack_from("<I", prefix, 0)
        if zlib.crc32(prefix[4:pos] + header) != stored_crc:
            raise Unlisted("a header fails its CRC")
        block_type, p = read_vint(header, 0)
        flags, p = read_vint(header, p)
        extra_size = data_size = 0
        if flags & 0x0001:
            extra_size, p = read_vint(header, p)
        if flags & 0x0002:
            data_size, p = read_vint(header, p)
        if block_type == 1:  # main archive header
            archive_flags, p = read_vint(header, p)
            is_volume = bool(archive_flags & 0x0001)
        elif block_type == 2:  # file
            members.append(_rar5_member(header, p, flags, extra_size))
        elif block_type == 4:
            raise Unlisted("the headers are encrypted")
        elif block_type == 5:  # end of archive
            end_flags, p = read_vint(header, p)
            return RarListing(members, is_volume, bool(end_flags & 0x0001))
        offset += pos + head_size + data_size


def _rar5_member(header: bytes, p: int, flags: int, extra_size: int) -> RarMember:
    file_flags, p = read_vint(header, p)
    if file_flags & 0x0008:
        raise Unlisted("a member of unknown size")
    size, p = read_vint(header, p)
    attributes, p = read_vint(header, p)
    if file_flags & 0x0002:
        p += 4  # modification time
    crc = None
    if file_flags & 0x0004:
        (crc,) = struct.unpack_from("<I", header, p)
        p += 4
    _compression, p = read_vint(header, p)
    host_os, p = read_vint(header, p)
    name_length, p = read_vint(header, p)
    name = header[p : p + name_length].decode("utf-8")
    link_kind, link_target = _rar5_redirection(header[len(header) - extra_size :] if extra_size else b"")
    return RarMember(name, bool(file_flags & 0x0001), size, _checkable(crc, size), host_os, attributes, link_kind,
                     link_target, split_before=bool(flags & 0x0008), split_after=bool(flags & 0x0010))


def _checkable(crc: int | None, size: int) -> int | None:
    """A zero CRC of a non-empty member is taken as none, as rars reports a BLAKE2-hashed RAR5 member."""
    return None if crc == 0 and size else crc


def _rar5_redirection(extra: bytes) -> tuple[str | None, str | None]:
    """(kind, target) from a file header's redirection record, if it has one."""
    pos = 0
    while pos < len(extra):
        record_size, start = read_vint(extra, pos)
        record_type, p = read_vint(extra, start)
        if record_type == 0x05:
            redirection, p = read_vint(extra, p)
            _flags, p = read_vint(extra, p)
            length, p = read_vint(extra, p)
            target = extra[p : p + length].decode("utf-8", "surrogateescape")
            # 1-3: Unix symlink, Windows symlink, junction; 4: hard link, 5: copy of another member
            return ("hardlink" if redirection in (4, 5) else "symlink"), target
        pos = start + record_size
    return None, None


# ---------------------------------------------------------------- RAR 1.5 - 4.x


def _list_rar4(handle: BinaryIO, offset: int) -> RarListing:
    members: list[RarMember] = []
    is_volume = False
    while True:
        handle.seek(offset)
        base = handle.read(7)
        if len(base) < 7:
            return RarListing(members, is_volume, None)
        stored_crc, block_type, flags, head_size = struct.unpack("<HBHH", base)
        if head_size < 7:
            raise Unlisted("a header shorter than its fixed part")
        header = base + _read_exact(handle, head_size - 7)
        if block_type in (0x73, 0x74) and zlib.crc32(header[2:]) & 0xFFFF != stored_crc:
            raise Unlisted("a header fails its CRC")
        data_size = 0
        if block_type == 0x73:  # archive header
            is_volume = bool(flags & 0x0001)
            if flags & 0x0080:
                raise Unlisted("the headers are encrypted")
        elif block_type == 0x74:  # file
            member, data_size = _rar4_member(header, flags)
            if member.link_kind is not None and member.link_target is None:
                member = _with_stored_link_target(handle, offset + head_size, data_size, member, header)
            members.append(member)
        elif block_type == 0x7B:  # end of archive
            return RarListing(members, is_volume, bool(flags & 0x0001))
        elif flags & 0x8000:  # other blocks with a data area (sub-blocks, comments, recovery)
            (data_size,) = struct.unpack_from("<I", header, 7)
        offset += head_size + data_size


def _rar4_member(header: bytes, flags: int) -> tuple[RarMember, int]:
    """The member a RAR4 file header describes, and the size of its data area."""
    pack_size, size, host_os, crc, _mtime, _version, _method, name_size, attributes = struct.unpack_from(
        "<IIBIIBBHI", header, 7)
    p = 32
    if flags & 0x0100:  # 64-bit sizes
        high_pack, high_size = struct.unpack_from("<II", header, p)
        pack_size, size = pack_size + (high_pack << 32), size + (high_size << 32)
        p += 8
    raw_name = header[p : p + name_size]
    name = _rar4_name(raw_name, unicode=bool(flags & 0x0200))
    is_dir = flags & 0x00E0 == 0x00E0
    is_link = host_os == UNIX_HOSTS["rar4"] and (attributes & 0o170000) == 0o120000
    member = RarMember(name, is_dir, size, _checkable(crc, size), host_os, attributes, "symlink" if is_link else None, None,
                       split_before=bool(flags & 0x0001), split_after=bool(flags & 0x0002))
    return member, pack_size


def _with_stored_link_target(handle: BinaryIO, data_offset: int, data_size: int, member: RarMember,
                             header: bytes) -> RarMember:
    """A RAR4 Unix symlink keeps its target as the member's content: readable here when stored."""
    method, flags = header[25], struct.unpack_from("<H", header, 3)[0]
    if method != 0x30 or flags & 0x0004 or data_size != member.size:  # compressed or encrypted
        raise Unlisted("a link target is stored compressed")
    handle.seek(data_offset)
    target = _read_exact(handle, data_size)
    return RarMember(**{**member.__dict__, "link_target": target.decode("utf-8", "surrogateescape")})


def _rar4_name(raw: bytes, unicode: bool) -> str:
    """RAR4 names: bytes in the creator's code page (UTF-8 here; any other is left to rars and its
    legacy-name policy), or with the Unicode flag UTF-8, or an ASCII name, a zero byte and RAR's own
    compact encoding of the Unicode name (unrar's EncodeFileName)."""
    if not unicode:
        return raw.decode("utf-8")  # UnicodeDecodeError: Unlisted (list_rar)
    if b"\x00" not in raw:
        return raw.decode("utf-8")
    ascii_name, encoded = raw.split(b"\x00", 1)
    return _decode_rar4_unicode(ascii_name, encoded)


def _decode_rar4_unicode(ascii_name: bytes, encoded: bytes) -> str:
    if not encoded:
        return ascii_name.decode("latin-1")
    high = encoded[0]
    pos, flags, flag_bits, out = 1, 0, 0, []
    while pos < len(encoded):
        if flag_bits == 0:
            flags, pos, flag_bits = encoded[pos], pos + 1, 8
        mode = flags >> 6
        if mode == 0:
            out.append(encoded[pos])
            pos += 1
        elif mode == 1:
            out.append(encoded[pos] + (high << 8))
            pos += 1
        elif mode == 2:
            out.append(encoded[pos] + (encoded[pos + 1] << 8))
            pos += 2
        else:
            length = encoded[pos]
            pos += 1
            if length & 0x80:
                correction = encoded[pos]
                pos += 1
                for _ in range((length & 0x7F) + 2):
                    out.append(((ascii_name[len(out)] + correction) & 0xFF) + (high << 8))
            else:
                for _ in range(length + 2):
                    out.append(ascii_name[len(out)])
        flags = (flags << 2) & 0xFF
        flag_bits -= 2
    return "".join(map(chr, out))
