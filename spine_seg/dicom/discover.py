"""Which folders under an input are studies: the layout decision, made from image DICOM only.

Why: a folder of studies (the competition's ``test_images/<study>/<series>/*.dcm``) and one study
(``<study>/<series>/*.dcm``) differ only in depth, and real archives add noise: a ``Thumbs.db``, a README, a
DICOMDIR, a study whose files sit flat in its folder, series folders that are symlinks, the same study copied
under two names. Deciding by "any file one or two levels down" made one stray file turn a folder of studies
into a single study. Here only files that look like image DICOM (the ``DICM`` magic, not a DICOMDIR) count,
symlinked folders are followed once (a link back up the tree is not followed twice), and where depth alone is
ambiguous the StudyInstanceUID and SeriesInstanceUID of one file per folder decide.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from spine_seg.dicom.tags import lenient_reading

log = logging.getLogger(__name__)

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
#: DICOM-looking files kept per folder for the layout decision (UIDs of at most this many are read).
_SAMPLE = 50
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})


def walk_files(root: str | Path) -> Iterator[Path]:
    """Every non-hidden file under ``root``, sorted per folder, following symlinked folders and files.

    A folder reached twice (a symlink loop, or two links to one folder) is walked once: its real path is
    remembered. Unreadable folders are logged and skipped, never fatal.
    """
    root = Path(root)
    if root.is_file():
        yield root
        return
    seen: set[str] = set()

    def walk(folder: Path) -> Iterator[Path]:
        try:
            real = os.path.realpath(folder)
        except OSError as exc:  # pragma: no cover - realpath rarely fails
            log.warning("%s: cannot resolve (%s); skipped", folder, exc)
            return
        if real in seen:
            log.info("%s: already walked (symlink to %s); not followed again", folder, real)
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            log.warning("%s: cannot list folder (%s); skipped", folder, exc)
            return
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir(follow_symlinks=True):
                    subdirs.append(Path(e.path))
                elif e.is_file(follow_symlinks=True):
                    yield Path(e.path)
            except OSError as exc:
                log.warning("%s: cannot stat (%s); skipped", e.path, exc)
        for d in subdirs:
            yield from walk(d)

    yield from walk(root)


def looks_like_dicom(path: Path) -> bool:
    """Cheap test: the 128-byte preamble then ``DICM`` (what pydicom itself requires without force), and not
    a DICOMDIR by name. One 132-byte read per file."""
    if path.name.upper() == "DICOMDIR":
        return False
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


@dataclass(frozen=True)
class _Uids:
    study: str
    series: str
    is_directory: bool = False
    is_image: bool = True


def _uids(path: Path) -> _Uids | None:
    """StudyInstanceUID and SeriesInstanceUID of one file (header only), None when unreadable."""
    try:
        with lenient_reading():
            ds = pydicom.dcmread(
                path,
                stop_before_pixels=True,
                specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "PatientID", "Rows"],
            )
    except (InvalidDicomError, OSError, ValueError, TypeError, KeyError, EOFError, AttributeError):
        return None
    is_dir = str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == _MEDIA_STORAGE_DIRECTORY
    study = str(ds.get("StudyInstanceUID", "") or ds.get("PatientID", "") or "")
    return _Uids(study, str(ds.get("SeriesInstanceUID", "") or ""), is_dir, "Rows" in ds)


@dataclass(frozen=True)
class Discovery:
    """The study folders found under an input, and what was noticed on the way."""

    root: Path
    folders: tuple[Path, ...]
    study_uids: dict[Path, str] = field(default_factory=dict)  # folder → StudyInstanceUID of one of its files
    warnings: tuple[str, ...] = ()

    @property
    def duplicates(self) -> dict[str, tuple[Path, ...]]:
        """StudyInstanceUID → the folders that hold it, where more than one does."""
        by_uid: dict[str, list[Path]] = defaultdict(list)
        for f in self.folders:
            uid = self.study_uids.get(f)
            if uid:
                by_uid[uid].append(f)
        return {u: tuple(fs) for u, fs in by_uid.items() if len(fs) > 1}


def _dicom_folders(root: Path) -> dict[Path, list[Path]]:
    """Folder (as walked, links not resolved) → its image-DICOM-looking files, for every folder under root."""
    out: dict[Path, list[Path]] = defaultdict(list)
    for p in walk_files(root):
        if len(out[p.parent]) < _SAMPLE and looks_like_dicom(p):  # a sample per folder decides; the scan reads all
            out[p.parent].append(p)
    # a folder counts when one of its first files is image DICOM (a lone DICOMDIR or report does not count)
    return {f: files for f, files in out.items() if files and _first_uids(files) is not None}


def _first_uids(files: list[Path], limit: int = 5) -> _Uids | None:
    for p in files[:limit]:
        u = _uids(p)
        if u is not None and not u.is_directory and u.is_image:
            return u
    return None


def find_study_folders(input_path: str | Path) -> Discovery:
    """The study folders under ``input_path`` (see the module doc for the rules).

    * ``input_path`` holds image DICOM itself: it is one study.
    * Otherwise each child folder holding image DICOM at any depth is a study, except where every such child
      holds its files directly and they are the series of one study (one StudyInstanceUID, distinct series):
      then ``input_path`` is that study with series folders.
    Raises FileNotFoundError / NotADirectoryError for a missing, non-folder or DICOM-less input.
    """
    root = Path(input_path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: INPUT must be a study folder or a folder of study folders, not a file")
    by_folder = _dicom_folders(root)
    if not by_folder:
        n = sum(1 for _ in walk_files(root))
        if n == 0:
            raise FileNotFoundError(f"{root}: empty folder: no files, so no study to predict")
        raise FileNotFoundError(f"{root}: no DICOM files among its {n} files, so no study to predict")
    if root in by_folder:
        return Discovery(root, (root,), {root: getattr(_first_uids(by_folder[root]), "study", "")})

    warnings_: list[str] = []
    children: dict[Path, list[Path]] = defaultdict(list)  # child of root → DICOM folders under it
    for folder in by_folder:
        rel = folder.relative_to(root)
        children[root / rel.parts[0]].append(folder)
    flat = {c: fs == [c] for c, fs in children.items()}
    if all(flat.values()):
        uids = {
            c: [u for u in (_uids(p) for p in by_folder[c][:50]) if u is not None and not u.is_directory and u.is_image]
            for c in children
        }
        studies = {u.study for us in uids.values() for u in us}
        series_sets = [{u.series for u in us} for us in uids.values()]
        disjoint = sum(len(s) for s in series_sets) == len(set().union(*series_sets)) if series_sets else True
        one_series_each = all(len(s) <= 1 for s in series_sets)
        named_as_study = len(children) == 1 and next(iter(children)).name in studies
        if len(studies) <= 1 and disjoint and one_series_each and not named_as_study:
            uid = next(iter(studies), "")
            return Discovery(root, (root,), {root: uid})
    # a child with files named like DICOM (*.dcm) but none readable is a damaged study, not noise: listed, so
    # that it fails as a study (its rows from the prior, its reason in errors.csv) instead of vanishing
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if child not in children and any(f.suffix.lower() in _DICOM_SUFFIXES for f in walk_files(child)):
            children[child] = []
            warnings_.append(
                f"{child}: files named like DICOM but none readable as an image: listed as a study to fail"
            )
    folders = tuple(sorted(children))
    study_uids: dict[Path, str] = {}
    for c in folders:
        u = _first_uids(by_folder[children[c][0]]) if children[c] else None
        study_uids[c] = u.study if u is not None else ""
    empty = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p not in children)
    if empty:
        warnings_.append(f"{root}: {len(empty)} folder(s) without DICOM images ignored: {', '.join(empty[:5])}")
    d = Discovery(root, folders, study_uids, tuple(warnings_))
    for uid, fs in d.duplicates.items():
        msg = (
            f"StudyInstanceUID {uid} is in {len(fs)} folders ({', '.join(f.name for f in fs)}): each is predicted "
            "under its folder name"
        )
        log.warning("%s", msg)
        d = Discovery(d.root, d.folders, d.study_uids, (*d.warnings, msg))
    return d


__all__ = ["Discovery", "find_study_folders", "looks_like_dicom", "walk_files"]
