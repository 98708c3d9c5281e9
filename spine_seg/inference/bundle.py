"""Model bundles: every model ``predict`` needs, in one folder or zip, with a manifest that says what it is.

Layout (a zip holds the same tree at its top level)::

    manifest.json                       format, versions, label maps, crop settings, training data, checksums
    segmentation/<Trainer>__<Plans>__<config>/   an nnU-Net result folder: dataset.json, plans.json,
                                        fold_<f>/checkpoint_final.pth
    grading/<run>/fold<k>.pt            grading checkpoints (:mod:`spine_seg.grading.models`)
    grading/ensemble.json               members (relative paths), weights, temperatures, crop specs
    fallback/axial_fallback.pt          optional: the Axial T2 fallback CNN

Why a manifest and not just folders: ``predict`` must refuse a bundle it would misread (labels renumbered,
levels or severities in another order, a newer bundle format, a truncated copy) with a message that says
what differs, before it spends minutes on a cohort. Installed bundles live in ``$SPINESEG_HOME/bundles/<name>``
(``spineseg bundle import``), as TotalSegmentator installs its weights offline.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spine_seg.core import home as core_home
from spine_seg.core.archives import ArchiveError, UnsafeArchiveError, extract_archive
from spine_seg.core.checksums import sha256_file
from spine_seg.core.constants import CONDITIONS, LEVELS, SEVERITIES
from spine_seg.core.errors import UserError
from spine_seg.core.labels import BASE_LABELS, SEG_LABELS
from spine_seg.core.versions import __version__, package_versions

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "spineseg-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BUNDLES_DIR = core_home.BUNDLES_DIR
#: Labels the landmark stage needs from the segmentation model: the discs (a vertebrae-only model such as
#: Dataset503_MyoSegmenTUM's cannot place disc levels).
REQUIRED_SEG_LABELS: tuple[str, ...] = tuple(f"disc_{lv}" for lv in LEVELS)


class BundleError(UserError, ValueError):
    """A bundle that cannot be used as it is; the message names the bundle, the file and the problem."""


def bundles_home(home: str | Path | None = None) -> Path:
    """Where imported bundles are installed: ``home`` if given, else :func:`spine_seg.core.home.bundles_home`
    (``$SPINESEG_HOME/bundles``, default ``~/.spineseg/bundles``)."""
    return Path(home) if home is not None else core_home.bundles_home()


# ---------------------------------------------------------------------------------------------------------
# the loaded bundle


@dataclass(frozen=True)
class ModelBundle:
    """A checked bundle on disk; models are loaded on demand (``segmentation_model`` …)."""

    root: Path
    manifest: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.root.name))

    @property
    def segmentation_folder(self) -> Path:
        return self.root / self.manifest["segmentation"]["folder"]

    @property
    def segmentation_folds(self) -> tuple[int | str, ...]:
        return tuple(self.manifest["segmentation"]["folds"])

    @property
    def has_grading(self) -> bool:
        """Whether the bundle grades the 25 competition rows (a segmentation-only bundle, such as the shipped
        base model's, gives landmarks, measurements and measured grades only)."""
        return bool(self.manifest.get("grading"))

    @property
    def ensemble_file(self) -> Path:
        return self.root / self.manifest["grading"]["ensemble"]

    @property
    def fallback_file(self) -> Path | None:
        fb = self.manifest.get("fallback")
        return self.root / fb["path"] if fb else None

    def summary(self) -> dict[str, Any]:
        """What ``result.json`` records about the models used."""
        m = self.manifest
        return {
            "name": self.name,
            "path": str(self.root),
            "created": m.get("created"),
            "spineseg_version": m.get("versions", {}).get("spineseg"),
            "segmentation": {
                k: m["segmentation"].get(k) for k in ("folder", "folds", "configuration", "trainer", "plans")
            },
            "grading": (
                {"backbones": m["grading"].get("backbones"), "members": m["grading"].get("members")}
                if self.has_grading
                else None
            ),
            "fallback": bool(m.get("fallback")),
            "training_data": m.get("training_data"),
        }

    def segmentation_model(self, device: str = "auto", mirroring: str | None = None):
        from spine_seg.segmentation.predict import SegmentationModel

        return SegmentationModel.from_folder(
            self.segmentation_folder, fold=list(self.segmentation_folds), device=device, mirroring=mirroring
        )

    def ensemble(self, device: str = "auto"):
        if not self.has_grading:
            return None
        from spine_seg.grading.ensemble import Ensemble

        return Ensemble.from_json(self.ensemble_file, device=device)

    def fallback(self, device: str = "auto"):
        if self.fallback_file is None:
            return None
        from spine_seg.grading.fallback import AxialFallback

        return AxialFallback(self.fallback_file, device=device)


#: The name a segmentation-only bundle of the shipped base model carries (results, resume key).
BASE_BUNDLE_NAME = "spineseg-base-model"


def base_model_bundle(base_dir: str | Path | None = None) -> ModelBundle:
    """The shipped base segmentation model (or the base model folder ``base_dir``) as a bundle without
    grading: what ``spineseg predict`` runs when no ``--model`` is given. Its file list (for resume) is the
    base model's own manifest and checkpoints."""
    from spine_seg.core.checksums import sha256_file
    from spine_seg.segmentation.base_model import model_folds, nnunet_folder, read_manifest, require_base_model

    root = require_base_model(base_dir)
    base = read_manifest(root)
    folder = nnunet_folder(root)
    files = {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted([root / "base_model.json", *folder.glob("fold_*/checkpoint_final.pth")])
    }
    recipe = base.get("recipe", {})
    manifest = {
        "name": BASE_BUNDLE_NAME,
        "segmentation": {
            "folder": str(folder.relative_to(root)),
            "folds": [int(f) if f.isdigit() else f for f in model_folds(root)],
            "configuration": recipe.get("configuration", "2d"),
            "trainer": recipe.get("trainer"),
            "plans": recipe.get("plans"),
            "label_scheme": base.get("label_scheme"),
        },
        "grading": None,
        "versions": base.get("versions", {}),
        "files": files,
        "training_data": base.get("data"),
    }
    return ModelBundle(root, manifest)


# ---------------------------------------------------------------------------------------------------------
# checks


def check_manifest(manifest: Mapping[str, Any], where: str) -> None:
    """Refuse a manifest this spineseg would misread; the error says what differs and what to do."""
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where}: not a spineseg bundle manifest (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{where}: bundle format version {version!r}, this spineseg {__version__} reads up to "
            f"{BUNDLE_FORMAT_VERSION}: upgrade spineseg or export the bundle again"
        )
    labels = manifest.get("labels", {})
    for key, ours in (("conditions", CONDITIONS), ("levels", LEVELS), ("severities", SEVERITIES)):
        theirs = labels.get(key)
        if theirs is not None and tuple(theirs) != tuple(ours):
            raise BundleError(f"{where}: {key} {theirs} differ from this spineseg's {list(ours)}")
    seg = manifest.get("segmentation") or {}
    seg_labels = seg.get("labels")
    if not isinstance(seg_labels, Mapping):
        raise BundleError(f"{where}: segmentation.labels missing")
    if {k: v for k, v in seg_labels.items() if k != "ignore"} == BASE_LABELS:
        # the base model's structure labels: levels are named by counting (spine_seg.landmarks.structures)
        if not (manifest.get("grading") or {}).get("ensemble"):
            raise BundleError(f"{where}: grading.ensemble missing")
        return
    wrong = {k: v for k, v in seg_labels.items() if k in SEG_LABELS and SEG_LABELS[k] != v}
    unknown = sorted(set(seg_labels) - set(SEG_LABELS))
    if wrong or unknown:
        raise BundleError(
            f"{where}: segmentation label map differs from spineseg's "
            f"({'renumbered: ' + str(wrong) if wrong else ''}{'; unknown names: ' + str(unknown) if unknown else ''}); "
            f"expected values from {dict(SEG_LABELS)}"
        )
    lacking = [n for n in REQUIRED_SEG_LABELS if n not in seg_labels]
    if lacking:
        raise BundleError(f"{where}: the segmentation model lacks labels {lacking} that the landmark stage needs")
    if not (manifest.get("grading") or {}).get("ensemble"):
        raise BundleError(f"{where}: grading.ensemble missing")


def verify_bundle(root: Path, manifest: Mapping[str, Any], checksums: bool = True) -> None:
    """Every file the manifest lists is present with its size (and sha256 unless ``checksums=False``),
    and the nnU-Net dataset.json agrees with the manifest's label map."""
    files = manifest.get("files") or {}
    if not files:
        raise BundleError(f"{root / MANIFEST}: lists no files")
    problems = []
    for rel, info in files.items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
        elif p.stat().st_size != info["size"]:
            problems.append(f"{rel}: {p.stat().st_size} bytes, manifest says {info['size']} (truncated copy?)")
        elif checksums and sha256_file(p) != info["sha256"]:
            problems.append(f"{rel}: sha256 differs from the manifest (modified or corrupt)")
    if problems:
        raise BundleError(
            f"{root}: bundle incomplete or damaged: "
            + "; ".join(problems[:8])
            + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
        )
    ds = root / manifest["segmentation"]["folder"] / "dataset.json"
    ds_labels = json.loads(ds.read_text(encoding="utf-8")).get("labels", {})
    if {k: int(v) for k, v in ds_labels.items()} != {k: int(v) for k, v in manifest["segmentation"]["labels"].items()}:
        raise BundleError(
            f"{ds}: labels {ds_labels} differ from the manifest's {dict(manifest['segmentation']['labels'])}"
        )


def _unpack_zip(path: Path, home: Path | None) -> Path:
    """Unpack a bundle zip once, into ``bundles/.unpacked/<sha>``; refuses members that leave the folder."""
    digest = sha256_file(path)[:16]
    target = bundles_home(home) / ".unpacked" / digest
    if (target / MANIFEST).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{digest}-"))
    try:
        _extract(path, tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _extract(path: Path, dest: Path) -> None:
    try:
        extract_archive(path, dest, kind="zip")
    except UnsafeArchiveError as exc:
        raise BundleError(f"{path}: a member would be written outside the bundle folder ({exc})") from exc
    except ArchiveError as exc:
        raise BundleError(f"{path}: not a readable zip ({exc.__cause__ or exc})") from exc
    if not (dest / MANIFEST).is_file():
        inner = [p for p in dest.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
        if len(inner) != 1:
            raise BundleError(f"{path}: no {MANIFEST} at the top of the zip")
        for child in inner[0].iterdir():  # a zip of the folder itself: lift its content one level
            child.rename(dest / child.name)
        inner[0].rmdir()


def installed_bundles(home: str | Path | None = None) -> list[str]:
    root = bundles_home(home)
    return (
        sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file() and not p.name.startswith("."))
        if root.is_dir()
        else []
    )


def load_bundle(ref: str | Path, *, checksums: bool = True, home: str | Path | None = None) -> ModelBundle:
    """A bundle from a folder, a zip, or the name of an installed bundle; checked before it is returned."""
    path = Path(ref)
    if not path.exists():
        installed = bundles_home(home) / str(ref)
        if (installed / MANIFEST).is_file():
            path = installed
        else:
            names = installed_bundles(home)
            raise BundleError(
                f"no bundle {str(ref)!r}: not a folder or zip, and not an installed bundle "
                f"(installed in {bundles_home(home)}: {names or 'none'}); "
                "make one with `spineseg demo` or `spineseg bundle export`, install with `spineseg bundle import`"
            )
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise BundleError(f"{path}: neither a bundle folder nor a zip")
        path = _unpack_zip(path, None if home is None else Path(home))
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST}; not a spineseg bundle")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BundleError(
            f"{manifest_path}: a JSON {type(manifest).__name__}, not an object; not a spineseg bundle manifest"
        )
    try:
        check_manifest(manifest, str(manifest_path))
        verify_bundle(path, manifest, checksums)
    except (AttributeError, TypeError, KeyError) as exc:  # a field of the wrong type or missing
        raise BundleError(f"{manifest_path}: malformed manifest ({type(exc).__name__}: {exc})") from exc
    except OSError as exc:  # e.g. dataset.json unreadable
        raise BundleError(f"{path}: cannot read bundle file ({exc})") from exc
    return ModelBundle(path.resolve(), manifest)


# ---------------------------------------------------------------------------------------------------------
# export / import


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def export_bundle(
    out: str | Path,
    segmentation_folder: str | Path,
    grading: Iterable[str | Path] | str | Path,
    *,
    folds: Iterable[int | str] | None = None,
    fallback: str | Path | None = None,
    training_data: Mapping[str, Any] | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle folder (or ``.zip`` when ``out`` ends so) from trained models.

    ``segmentation_folder``: an nnU-Net result folder (``…/<Trainer>__<Plans>__<config>``); ``folds``: which
    folds to take (default every fold with ``checkpoint_final.pth``). ``grading``: an ``ensemble.json``, or
    run folders / checkpoints (weights 1, no temperature). ``fallback``: an ``axial_fallback.pt`` (used only
    where it beat the prior in its own validation). ``training_data``: free-form summary kept in the manifest.

    Long on purpose: a checklist of the bundle's parts, staged and checked before the one rename.
    """
    from spine_seg.grading.ensemble import Ensemble
    from spine_seg.grading.models import read_checkpoint

    out = Path(out)
    as_zip = out.suffix == ".zip"
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out}: exists; pass overwrite=True (--overwrite) to replace it")
    seg = Path(segmentation_folder)
    for required in ("dataset.json", "plans.json"):
        if not (seg / required).is_file():
            raise FileNotFoundError(f"{seg}: not an nnU-Net result folder ({required} missing)")
    available = sorted(p.parent.name[len("fold_") :] for p in seg.glob("fold_*/checkpoint_final.pth"))
    wanted = [str(f) for f in (folds if folds is not None else available)]
    missing = [f for f in wanted if f not in available]
    if not wanted or missing:
        raise FileNotFoundError(
            f"{seg}: no checkpoint_final.pth for fold(s) {missing or 'any'}; available: {available or 'none'}"
        )

    sources = [grading] if isinstance(grading, str | Path) else list(grading)
    if len(sources) == 1 and Path(sources[0]).suffix == ".json":
        ens = Ensemble.from_json(sources[0], device="cpu")
    else:
        ens = Ensemble.load(sources, device="cpu")

    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent if out.parent.exists() else None))
    try:
        seg_rel = Path("segmentation") / seg.name
        for f in ("dataset.json", "plans.json", "dataset_fingerprint.json"):
            if (seg / f).is_file():
                _copy(seg / f, staging / seg_rel / f)
        for f in wanted:
            _copy(seg / f"fold_{f}" / "checkpoint_final.pth", staging / seg_rel / f"fold_{f}" / "checkpoint_final.pth")
            record = seg / f"fold_{f}" / "spineseg_train.json"
            if record.is_file():
                _copy(record, staging / seg_rel / f"fold_{f}" / "spineseg_train.json")
        members = []
        for i, m in enumerate(ens.members):
            rel = Path("grading") / m.name / m.path.name
            if (staging / rel).exists():
                rel = Path("grading") / f"{m.name}-{i}" / m.path.name
            _copy(m.path, staging / rel)
            members.append({"path": rel.relative_to("grading").as_posix(), "name": m.name, "weight": m.weight})
        ens_doc = ens.to_dict()
        for d, member in zip(ens_doc["members"], members, strict=True):
            d["path"] = member["path"]
        (staging / "grading" / "ensemble.json").write_text(json.dumps(ens_doc, indent=1), encoding="utf-8")
        fb_entry = None
        if fallback is not None:
            fb_doc = read_checkpoint(fallback)
            if fb_doc.get("kind") != "axial_fallback":
                raise BundleError(f"{fallback}: not an axial fallback checkpoint")
            _copy(Path(fallback), staging / "fallback" / "axial_fallback.pt")
            fb_entry = {
                "path": "fallback/axial_fallback.pt",
                "beats_prior": bool(fb_doc.get("val", {}).get("beats_prior")),
                "backbone": fb_doc.get("backbone"),
                "val": fb_doc.get("val"),
            }
        dataset_json = json.loads((seg / "dataset.json").read_text(encoding="utf-8"))
        train_record = seg / f"fold_{wanted[0]}" / "spineseg_train.json"
        record = json.loads(train_record.read_text(encoding="utf-8")) if train_record.is_file() else {}
        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "name": name or out.stem,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "versions": package_versions(),
            "labels": {"conditions": list(CONDITIONS), "levels": list(LEVELS), "severities": list(SEVERITIES)},
            "segmentation": {
                "folder": seg_rel.as_posix(),
                "folds": [int(f) if f.isdigit() else f for f in wanted],
                "dataset": seg.parent.name,
                "trainer": record.get("trainer", seg.name.split("__")[0]),
                "plans": record.get("plans", seg.name.split("__")[1] if "__" in seg.name else None),
                "configuration": record.get("configuration", seg.name.split("__")[-1]),
                "labels": {k: int(v) for k, v in dataset_json.get("labels", {}).items()},
                "input": "Sagittal T2/STIR",
                "final_dice": record.get("final_dice"),
                "epochs": record.get("epochs"),
            },
            "grading": {
                "ensemble": "grading/ensemble.json",
                "groups": sorted(ens.groups),
                "backbones": sorted({m.meta["backbone"] for m in ens.members}),
                "members": len(ens.members),
                "crop_specs": ens_doc["crop_specs"],
                "temperatures": ens.temperatures,
            },
            "fallback": fb_entry,
            "training_data": dict(training_data or {}),
        }
        check_manifest(manifest, "export")
        manifest["files"] = {
            p.relative_to(staging).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(staging.rglob("*"))
            if p.is_file()
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if as_zip:
            tmp_zip = out.with_name(f".{out.name}.tmp")
            with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_STORED) as zf:  # checkpoints do not compress
                for p in sorted(staging.rglob("*")):
                    if p.is_file():
                        zf.write(p, p.relative_to(staging).as_posix())
            os.replace(tmp_zip, out)
            shutil.rmtree(staging)
        else:
            if out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("bundle written: %s", out)
    return out


def import_bundle(
    source: str | Path, name: str | None = None, *, home: str | Path | None = None, overwrite: bool = False
) -> ModelBundle:
    """Install a bundle (folder or zip) into ``$SPINESEG_HOME/bundles/<name>`` offline, checked first."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such bundle folder or zip")
    bundle = load_bundle(source, home=home)
    name = name or bundle.name
    if not name or "/" in name or name.startswith("."):
        raise BundleError(f"invalid bundle name {name!r}")
    target = bundles_home(home) / name
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target}: a bundle named {name!r} is installed; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        shutil.copytree(bundle.root, tmp, dirs_exist_ok=True)
        manifest = dict(bundle.manifest)
        manifest["name"] = name
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_bundle(target, home=home)


__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "MANIFEST",
    "BundleError",
    "ModelBundle",
    "bundles_home",
    "check_manifest",
    "export_bundle",
    "import_bundle",
    "installed_bundles",
    "load_bundle",
    "package_versions",
    "verify_bundle",
]
