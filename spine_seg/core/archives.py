"""Archive extraction, zip-slip safe: the one place spineseg unpacks a .zip or .tar.

Every member is checked before anything is written, so a refused archive leaves the target as it was.
Absolute paths, ``..`` and links are refused: a symlink member followed by a file written through it is the
classic way round a path check. Used by model bundles and by the dataset fetcher, which wrap these errors
in their own.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from spine_seg.core.errors import UserError

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")


class ArchiveError(UserError):
    """An archive that cannot be read, or of an unknown type."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would be written outside the target folder, or is a link or special file."""


def escapes(name: str) -> bool:
    """True when a relative name could resolve outside its folder (absolute, drive, or '..')."""
    posix = name.replace("\\", "/")
    return posix.startswith("/") or bool(PureWindowsPath(name).drive) or ".." in PurePosixPath(posix).parts


def is_archive(filename: str) -> bool:
    return filename.lower().endswith(ARCHIVE_SUFFIXES)


def _check_member(archive: Path, dest: Path, name: str) -> None:
    if not name or escapes(name):
        raise UnsafeArchiveError(
            f"refusing to extract {archive.name}: member {name!r} has an absolute path or '..' "
            f"and would be written outside {dest}; nothing was extracted"
        )
    resolved = (dest / name).resolve()
    if resolved != dest.resolve() and not resolved.is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(
            f"refusing to extract {archive.name}: member {name!r} resolves outside {dest}; nothing was extracted"
        )


def _extract_zip(archive: Path, dest: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_member(archive, dest, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(
                    f"refusing to extract {archive.name}: member {info.filename!r} is a symbolic link"
                )
        for info in infos:
            zf.extract(info, dest)
        return [i.filename for i in infos]


def _extract_tar(archive: Path, dest: Path) -> list[str]:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for m in members:
            _check_member(archive, dest, m.name)
            if not (m.isfile() or m.isdir()):
                raise UnsafeArchiveError(
                    f"refusing to extract {archive.name}: member {m.name!r} is a link or special file"
                )
        if hasattr(tarfile, "data_filter"):  # 3.11.4+: the stdlib's own belt to our braces
            tf.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - older 3.11 patch releases
            tf.extractall(dest, members=members)
        return [m.name for m in members]


def extract_archive(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, kind: str | None = None
) -> list[str]:
    """Unpack a .zip or .tar[.gz|.bz2|.xz] into ``dest`` after checking every member first.

    ``kind`` (``"zip"`` or ``"tar"``) overrides the type read from the file name (a bundle is a zip
    whatever its name). Returns the member names extracted.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    lower = archive.name.lower()
    kind = kind or ("zip" if lower.endswith(".zip") else "tar" if lower.endswith(ARCHIVE_SUFFIXES) else None)
    try:
        if kind == "zip":
            return _extract_zip(archive, dest)
        if kind == "tar":
            return _extract_tar(archive, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{archive} is not a readable archive ({exc})") from exc
    raise ArchiveError(f"{archive.name}: unknown archive type (expected one of {', '.join(ARCHIVE_SUFFIXES)})")
