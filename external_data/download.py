"""Download a registered dataset into a folder: resumable, checksummed, archives extracted safely.

Downloads stream to ``<file>.part`` and are renamed into place only when whole (and, where a checksum is
known, correct), so an interrupted run never leaves a file that looks complete; a re-run resumes with an
HTTP Range request or restarts cleanly. Archives are extracted by :mod:`spine_seg.core.archives` after every
member has been checked. The registry itself (and ``verify``) is :mod:`spine_seg_external_data.registry`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

from spine_seg.core import archives, home
from spine_seg.core.checksums import CHUNK_BYTES, sha256_file
from spine_seg.core.errors import UsageError
from spine_seg_external_data.registry import (
    BASE_URL_ENV,
    TIMEOUT_S,
    ChecksumMismatch,
    Dataset,
    Download,
    DownloadError,
    Log,
    ManualDownloadRequired,
    Progress,
    Registry,
    UnsafeArchiveError,
    VerifyReport,
    _as_dataset,
    verify,
)

__all__ = ["StderrProgress", "default_dest", "download_file", "extract_archive", "fetch"]


# -------------------------------------------------------------------------------------------- fetch


def default_dest(name: str) -> Path:
    """Where ``fetch`` puts a dataset without ``--dest``: ``$SPINESEG_HOME/data/<name>``.

    ``SPINESEG_HOME`` is resolved by :mod:`spine_seg.core.home` (default ``~/.spineseg``), the same home
    as nnU-Net's folders and the installed bundles.
    """
    return home.data_home(name)


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[str]:
    """Unpack a .zip or .tar[.gz|.bz2|.xz] into ``dest`` after checking every member first.

    The checks and the extraction are :func:`spine_seg.core.archives.extract_archive`'s; this wrapper only
    turns its errors into this module's (an unreadable archive is a download to redo).
    """
    try:
        return archives.extract_archive(archive, dest)
    except archives.UnsafeArchiveError as exc:
        raise UnsafeArchiveError(str(exc)) from exc
    except archives.ArchiveError as exc:
        msg = str(exc)
        if "unknown archive type" not in msg:
            msg += "; delete it and fetch again"
        raise DownloadError(msg) from exc


class StderrProgress:
    """Progress lines on stderr, at most one a second, so logs of long downloads stay readable."""

    def __init__(self, stream: Any = None, every_s: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last = 0.0

    def __call__(self, filename: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < self.every_s:
            return
        self._last = now
        mib = done / 2**20
        if total:
            msg = f"{filename}: {mib:,.1f} / {total / 2**20:,.1f} MiB ({100 * done / total:.0f}%)"
        else:
            msg = f"{filename}: {mib:,.1f} MiB"
        print(msg, file=self.stream, flush=True)


def _manual_hint(ds: Dataset | None, dest: Path | None) -> str:
    if ds is None:
        return ""
    where = f" into {dest}" if dest else ""
    return f". Download it by hand{where}: {ds.manual_download}"


def download_file(
    url: str,
    target: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    progress: Progress | None = None,
    timeout: float = TIMEOUT_S,
    hint: str = "",
) -> str:
    """Stream ``url`` to ``target`` through ``target.part``; return the file's sha256.

    An existing ``.part`` is resumed with a Range request; a server that answers 200 instead of 206
    (no range support) or 416 (the file changed) makes it restart from zero. The ``.part`` is renamed
    onto ``target`` (atomic on one file system) only when the byte count is whole and the checksum,
    if given, matches; a mismatching file is deleted, since resuming it could never make it right.

    Long on purpose: one resumable HTTP download, every failure mode handled where it happens.
    """
    target = Path(target)
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise UsageError(f"only http(s) URLs can be fetched, got {url!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    name = target.name

    for attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "spineseg-fetch (urllib)"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset and attempt == 0:
                part.unlink()  # the partial file no longer fits the remote one: start over
                continue
            raise DownloadError(f"could not download {url}: HTTP {exc.code} {exc.reason}{hint}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(f"could not download {url}: {reason}{hint}") from exc
        break
    else:  # pragma: no cover - the loop either breaks or raises
        raise DownloadError(f"could not download {url}{hint}")

    h = hashlib.sha256()
    with resp:
        length = resp.headers.get("Content-Length")
        content_range = resp.headers.get("Content-Range") or ""
        resumed = bool(offset) and resp.status == 206 and content_range.startswith(f"bytes {offset}-")
        if resumed:
            with open(part, "rb") as fh:  # the kept prefix must be part of the final digest
                while chunk := fh.read(CHUNK_BYTES):
                    h.update(chunk)
        else:
            offset = 0
        total = offset + int(length) if length and length.isdigit() else None
        done = offset
        try:
            with open(part, "ab" if resumed else "wb") as fh:
                while chunk := resp.read(CHUNK_BYTES):
                    fh.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(name, done, total)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"download of {url} broke off after {done} bytes ({exc}); run fetch again to resume from {part}{hint}"
            ) from exc
    if total is not None and done != total:
        raise DownloadError(
            f"download of {url} ended at {done} of {total} bytes; run fetch again to resume from {part}{hint}"
        )
    digest = h.hexdigest()
    if sha256 and digest != sha256:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{name} from {url} has sha256 {digest}, expected {sha256}; the download was deleted. "
            f"Fetch again, or check the source{hint}"
        )
    os.replace(part, target)
    return digest


def _plan(ds: Dataset, url: str | None, base_url: str | None) -> list[Download]:
    """Which files to get from where: ``url`` replaces the list, ``base_url`` re-roots it."""
    if url:
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        filename = PurePosixPath(path).name
        if not filename or filename in (".", ".."):
            raise UsageError(f"cannot tell a file name from {url!r}; give a URL that ends in the file's name")
        for d in ds.downloads:
            if d.filename == filename:  # the same file from another place: keep what we know of it
                return [Download(filename, url, d.extract, d.sha256, d.reported_sha256, d.reported_source)]
        return [Download(filename, url, archives.is_archive(filename))]
    if base_url:
        root = base_url.rstrip("/")
        return [
            Download(
                d.filename,
                f"{root}/{urllib.parse.quote(d.filename)}",
                d.extract,
                d.sha256,
                d.reported_sha256,
                d.reported_source,
            )
            for d in ds.downloads
        ]
    return list(ds.downloads)


def fetch(
    name_or_dataset: str | Dataset,
    dest: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    base_url: str | None = None,
    registry: Registry | None = None,
    keep_archives: bool = False,
    progress: Progress | None = None,
    log: Log | None = None,
    timeout: float = TIMEOUT_S,
) -> VerifyReport:
    """Download a dataset into ``dest``, extract its archives, and return :func:`verify`'s report.

    ``url`` fetches that one file instead of the registered list; ``base_url`` (default: the
    ``SPINESEG_FETCH_BASE_URL`` environment variable) fetches each registered file from
    ``<base>/<filename>``, which is how mirrors and the tests' loopback server stand in for the real
    hosts. A folder that already verifies is left alone, and files already in place with the right
    checksum are not downloaded again. Datasets whose terms need the user's own account raise
    :class:`ManualDownloadRequired` before any network access.
    """
    ds = _as_dataset(name_or_dataset, registry)
    note: Log = log or (lambda _msg: None)
    if ds.access != "direct":
        raise ManualDownloadRequired(f"{ds.name} cannot be downloaded for you ({ds.licence}). {ds.manual_download}")
    dest = Path(dest) if dest is not None else default_dest(ds.name)
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"{dest} exists and is not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    if url is None and verify(ds, dest).complete:
        note(f"{ds.name} is already complete in {dest}; nothing to download")
        return verify(ds, dest)

    hint = _manual_hint(ds, dest)
    base = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or None
    for d in _plan(ds, url, base):
        target = dest / d.filename
        expected = d.sha256 or (None if d.extract else ds.file_sha256(d.filename))
        marker = dest / f".{d.filename}.extracted"
        if d.extract and url is None and marker.is_file():
            done_digest = marker.read_text(encoding="utf-8").strip()
            if expected is None or done_digest == expected:
                note(f"{d.filename}: extracted by an earlier run, not downloaded again (delete {marker.name} to redo)")
                continue
        if target.is_file() and not d.extract:
            if expected is None or sha256_file(target) == expected:
                note(f"{d.filename}: already present, not downloaded again")
                continue
            note(f"{d.filename}: present but its checksum is wrong; downloading it again")
            target.unlink()
        if target.is_file() and d.extract and expected and sha256_file(target) != expected:
            target.unlink()  # a stale archive from another source: get it again
        digest = None
        if not target.is_file():
            note(f"{d.filename}: downloading {d.url}")
            digest = download_file(d.url, target, sha256=expected, progress=progress, timeout=timeout, hint=hint)
            if expected is None and d.reported_sha256 and digest != d.reported_sha256:
                note(
                    f"warning: {d.filename} has sha256 {digest}; {d.reported_source or 'a third party'} "
                    f"reports {d.reported_sha256} (not enforced: that value was never verified here)"
                )
        if d.extract:
            note(f"{d.filename}: extracting into {dest}")
            try:
                extract_archive(target, dest)
            except UnsafeArchiveError:
                target.unlink(missing_ok=True)  # never leave a hostile archive lying about for a re-run
                raise
            # a marker lets a re-run skip this archive once its (large) download has been deleted
            marker.write_text((digest or sha256_file(target)) + "\n", encoding="utf-8")
            if not keep_archives:
                target.unlink()
    return verify(ds, dest)
