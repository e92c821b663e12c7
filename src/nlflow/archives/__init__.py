"""Getting an archive onto disk and unpacked: resumable, checksum-locked downloads and safe, atomic
extraction of RAR, zip and tar archives (nested ones too)."""
