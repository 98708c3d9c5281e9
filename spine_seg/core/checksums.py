"""File checksums: the one sha256 reader, for bundles, datasets and run fingerprints."""

from __future__ import annotations

import hashlib
import os

#: Bytes read at a time: multi-gigabyte files need no memory.
CHUNK_BYTES = 1 << 20


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex sha256 of a file, read in chunks so multi-gigabyte files need no memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
