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

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from spine_seg.core import archives, home
from spine_seg.core.checksums import sha256_file
from spine_seg.core.errors import UserError

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
    """Long on purpose: one registry entry validated field by field, each error naming the field."""
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
