"""Load the dataset registry, check a folder against it, and download a dataset into a folder.

The registry itself is data (``registry.json`` beside this module, shipped as package data): URLs,
licences, citations, layouts and checksums change on their own schedule and should be reviewed as a
diff of data, not of code. This module only interprets it. Loading validates every entry, so a typo
fails at once rather than halfway through a multi-gigabyte download.

Three rules run through it:

* A checksum is recorded only where it was computed from a real copy of the file; ``null`` means
  "not known" and is never guessed. Third-party values are kept apart as ``reported_sha256`` and only
  warn when they disagree.
* Downloads stream to ``<file>.part`` and are renamed into place only when whole (and, where a checksum
  is known, correct), so an interrupted run never leaves a file that looks complete; a re-run resumes
  with an HTTP Range request or restarts cleanly.
* Archives are extracted only after every member has been checked: absolute paths, ``..`` and links are
  refused, so a hostile archive cannot write outside the destination.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from spine_seg.core import archives, home
from spine_seg.core.checksums import CHUNK_BYTES, sha256_file
from spine_seg.core.errors import UsageError, UserError

__all__ = [
    "BASE_URL_ENV",
    "ChecksumMismatch",
    "Dataset",
    "Download",
    "DownloadError",
    "ExternalDataError",
    "FileSpec",
    "GlobSpec",
    "ManualDownloadRequired",
    "Problem",
    "Registry",
    "RegistryError",
    "UnknownDatasetError",
    "UnsafeArchiveError",
    "VerifyReport",
    "default_dest",
    "download_file",
    "extract_archive",
    "fetch",
    "get_dataset",
    "load_registry",
    "sha256_file",
    "verify",
]

#: Environment variable naming a mirror: each registered file is fetched from ``<base>/<filename>``.
BASE_URL_ENV = "SPINESEG_FETCH_BASE_URL"
#: Environment variable for the folder that holds fetched datasets by default (``<home>/data/<name>``).
HOME_ENV = home.HOME_VAR
REGISTRY_FILE = "registry.json"
TIMEOUT_S = 30.0
ACCESS_KINDS = ("direct", "kaggle")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")

#: Called as ``progress(filename, bytes_done, bytes_total_or_None)`` while a download runs.
Progress = Callable[[str, int, "int | None"], None]
#: Receives one-line notes (skips, warnings) meant for a human; the CLI prints them on stderr.
Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------- errors


class ExternalDataError(UserError):
    """Base of every error this module raises on purpose, so callers can catch them as one."""


class RegistryError(ExternalDataError):
    """The registry file is malformed: a bug in the data, reported with the entry and field."""


class UnknownDatasetError(ExternalDataError, ValueError):
    """A dataset name that is not in the registry; the message lists the valid names."""


class ManualDownloadRequired(ExternalDataError):
    """The dataset cannot be fetched for the user (e.g. Kaggle terms); the message says how to get it."""


class DownloadError(ExternalDataError):
    """A download or extraction failed; the message names the URL/file and how to get it by hand."""


class ChecksumMismatch(DownloadError):
    """A downloaded file's sha256 differs from the recorded one (the file is discarded)."""


class UnsafeArchiveError(DownloadError, archives.UnsafeArchiveError):
    """An archive member would land outside the destination (absolute path, ``..``) or is a link."""


# ----------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FileSpec:
    """One file the layout names, relative to the dataset folder (posix separators)."""

    path: str
    sha256: str | None = None
    optional: bool = False
    sha256_source: str | None = None


@dataclass(frozen=True)
class GlobSpec:
    """A glob (relative to the dataset folder) that must match at least ``min_count`` paths."""

    pattern: str
    min_count: int
    what: str = ""


@dataclass(frozen=True)
class Download:
    """One file to download; ``extract`` archives are unpacked into the dataset folder."""

    filename: str
    url: str
    extract: bool = False
    sha256: str | None = None
    reported_sha256: str | None = None
    reported_source: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A registry entry. ``raw`` is the JSON entry as written, which ``list --json`` prints."""

    name: str
    title: str
    landing_url: str
    licence: str
    citation: Mapping[str, Any]
    contents: str
    access: str
    manual_download: str
    downloads: tuple[Download, ...]
    files: tuple[FileSpec, ...]
    globs: tuple[GlobSpec, ...]
    urls: Mapping[str, str] = field(default_factory=dict)
    licence_url: str | None = None
    licence_note: str | None = None
    kaggle_competition: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The entry exactly as the registry file holds it (a deep copy, safe to mutate)."""
        return json.loads(json.dumps(self.raw))

    def file_sha256(self, path: str) -> str | None:
        """The recorded checksum of a layout file, so a plain (non-archive) download can reuse it."""
        for spec in self.files:
            if spec.path == path:
                return spec.sha256
        return None


@dataclass(frozen=True)
class Registry:
    """All known datasets, by name, plus where they were read from (for error messages)."""

    datasets: Mapping[str, Dataset]
    source: str = REGISTRY_FILE

    @property
    def names(self) -> list[str]:
        return list(self.datasets)

    def get(self, name: str) -> Dataset:
        """The entry called ``name``; an unknown name raises with the valid choices listed."""
        try:
            return self.datasets[name]
        except KeyError:
            raise UnknownDatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(self.names)}") from None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "<dict>") -> Registry:
        """Validate a parsed registry document and build the typed entries."""
        entries = doc.get("datasets") if isinstance(doc, Mapping) else None
        if not isinstance(entries, list) or not entries:
            raise RegistryError(f"{source}: expected a non-empty list under 'datasets'")
        datasets: dict[str, Dataset] = {}
        for i, entry in enumerate(entries):
            ds = _parse_dataset(entry, f"{source}: datasets[{i}]")
            if ds.name in datasets:
                raise RegistryError(f"{source}: dataset {ds.name!r} is listed twice")
            datasets[ds.name] = ds
        return cls(datasets=datasets, source=source)


def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """Read and validate the registry: the packaged ``registry.json`` unless ``path`` names another."""
    if path is None:
        ref = resources.files(__package__ or "spine_seg_external_data").joinpath(REGISTRY_FILE)
        text, source = ref.read_text(encoding="utf-8"), REGISTRY_FILE
    else:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{source}: not valid JSON ({exc})") from exc
    return Registry.from_dict(doc, source)


def get_dataset(name: str, registry: Registry | None = None) -> Dataset:
    """The named entry of ``registry`` (default: the packaged one)."""
    return (registry or load_registry()).get(name)


def _need(entry: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    value = entry.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise RegistryError(f"{where}: field {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _checksum(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.match(value):
        raise RegistryError(f"{where}: sha256 must be 64 lower-case hex digits or null, got {value!r}")
    return value


def _relative(path: Any, where: str) -> str:
    """Layout paths must stay inside the dataset folder; the same rule as for archive members."""
    if not isinstance(path, str) or not path or archives.escapes(path):
        raise RegistryError(f"{where}: {path!r} must be a relative path without '..'")
    return path


def _parse_dataset(entry: Any, where: str) -> Dataset:
    if not isinstance(entry, Mapping):
        raise RegistryError(f"{where}: expected an object")
    name = _need(entry, "name", where)
    if not _NAME.match(name):
        raise RegistryError(f"{where}: name {name!r} must be lower-case letters, digits and '_'")
    where = f"{where} ({name})"
    citation = _need(entry, "citation", where, Mapping)
    _need(citation, "reference", f"{where}: citation")
    if "doi" not in citation:
        raise RegistryError(f"{where}: citation needs a 'doi' (null where there is none)")
    access = _need(entry, "access", where)
    if access not in ACCESS_KINDS:
        raise RegistryError(f"{where}: access must be one of {ACCESS_KINDS}, got {access!r}")
    layout = _need(entry, "layout", where, Mapping)

    downloads = []
    for j, d in enumerate(entry.get("downloads") or []):
        w = f"{where}: downloads[{j}]"
        if not isinstance(d, Mapping):
            raise RegistryError(f"{w}: expected an object")
        filename = _need(d, "filename", w)
        if PurePosixPath(filename).name != filename or filename in (".", ".."):
            raise RegistryError(f"{w}: filename {filename!r} must be a plain file name")
        url = _need(d, "url", w)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise RegistryError(f"{w}: url {url!r} must be http(s)")
        reported = d.get("reported_sha256") or {}
        downloads.append(
            Download(
                filename=filename,
                url=url,
                extract=bool(d.get("extract", False)),
                sha256=_checksum(d.get("sha256"), w),
                reported_sha256=_checksum(reported.get("value"), f"{w}: reported_sha256"),
                reported_source=reported.get("source"),
            )
        )
    if access == "direct" and not downloads:
        raise RegistryError(f"{where}: access 'direct' needs at least one download")

    files = []
    for j, f in enumerate(layout.get("files") or []):
        w = f"{where}: layout.files[{j}]"
        if not isinstance(f, Mapping):
            raise RegistryError(f"{w}: expected an object")
        files.append(
            FileSpec(
                path=_relative(f.get("path"), w),
                sha256=_checksum(f.get("sha256"), w),
                optional=bool(f.get("optional", False)),
                sha256_source=f.get("sha256_source"),
            )
        )
    globs = []
    for j, g in enumerate(layout.get("globs") or []):
        w = f"{where}: layout.globs[{j}]"
        if not isinstance(g, Mapping):
            raise RegistryError(f"{w}: expected an object")
        count = g.get("min_count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise RegistryError(f"{w}: min_count must be a positive integer")
        globs.append(GlobSpec(pattern=_relative(g.get("pattern"), w), min_count=count, what=str(g.get("what", ""))))
    if not files and not globs:
        raise RegistryError(f"{where}: layout names no files and no globs, so nothing could be verified")

    return Dataset(
        name=name,
        title=_need(entry, "title", where),
        landing_url=_need(entry, "landing_url", where),
        licence=_need(entry, "licence", where),
        citation=citation,
        contents=_need(entry, "contents", where),
        access=access,
        manual_download=_need(entry, "manual_download", where),
        downloads=tuple(downloads),
        files=tuple(files),
        globs=tuple(globs),
        urls=dict(entry.get("urls") or {}),
        licence_url=entry.get("licence_url"),
        licence_note=entry.get("licence_note"),
        kaggle_competition=entry.get("kaggle_competition"),
        raw=entry,
    )


# ------------------------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset folder, named precisely enough to fix by hand."""

    kind: str  # "missing" | "checksum" | "too_few" | "not_a_file"
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind:<10} {self.path}: {self.detail}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail}


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`: problems (empty when complete), what passed, and notes."""

    dataset: str
    root: Path
    problems: list[Problem] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "root": str(self.root),
            "complete": self.complete,
            "problems": [p.to_dict() for p in self.problems],
            "ok": list(self.ok),
            "notes": list(self.notes),
        }


def _as_dataset(name_or_dataset: str | Dataset, registry: Registry | None) -> Dataset:
    if isinstance(name_or_dataset, Dataset):
        return name_or_dataset
    return get_dataset(name_or_dataset, registry)


def verify(
    name_or_dataset: str | Dataset,
    root: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    check_checksums: bool = True,
) -> VerifyReport:
    """Check that ``root`` holds the dataset as the registry lays it out.

    Every required file must exist, every glob must reach its minimum count, and every file with a
    recorded sha256 (required or optional, when present) must match it. ``root`` itself missing is a
    user error (:class:`FileNotFoundError` / :class:`NotADirectoryError`), not an incomplete dataset.
    """
    ds = _as_dataset(name_or_dataset, registry)
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist (give the folder that holds the {ds.name} files)")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    report = VerifyReport(dataset=ds.name, root=root)

    for spec in ds.files:
        path = root / spec.path
        if not path.exists():
            if spec.optional:
                report.notes.append(f"optional file {spec.path} is absent")
            else:
                report.problems.append(Problem("missing", spec.path, "required file not found"))
            continue
        if not path.is_file():
            report.problems.append(Problem("not_a_file", spec.path, "exists but is not a regular file"))
            continue
        if spec.sha256 and check_checksums:
            actual = sha256_file(path)
            if actual != spec.sha256:
                report.problems.append(
                    Problem("checksum", spec.path, f"sha256 {actual} does not match the recorded {spec.sha256}")
                )
                continue
            report.ok.append(f"{spec.path} (sha256 ok)")
        else:
            report.ok.append(f"{spec.path} (present{'' if spec.sha256 else '; no checksum recorded'})")

    for g in ds.globs:
        count = sum(1 for _ in root.glob(g.pattern))
        what = f" ({g.what})" if g.what else ""
        if count < g.min_count:
            kind = "missing" if count == 0 else "too_few"
            report.problems.append(Problem(kind, g.pattern, f"{count} found, at least {g.min_count} expected{what}"))
        else:
            report.ok.append(f"{g.pattern}: {count} (>= {g.min_count})")
    return report


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
