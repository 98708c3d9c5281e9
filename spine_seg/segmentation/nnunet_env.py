"""The one place that sets nnU-Net's environment for spineseg.

nnU-Net v2 is configured through environment variables. :func:`apply` sets them, each only where the user
has not set it already:

=======================  ==========================================================================
variable                 spineseg's default
=======================  ==========================================================================
``nnUNet_raw``           ``$SPINESEG_HOME/nnUNet_raw``
``nnUNet_preprocessed``  ``$SPINESEG_HOME/nnUNet_preprocessed``
``nnUNet_results``       ``$SPINESEG_HOME/nnUNet_results``
``nnUNet_extTrainer``    spineseg's trainer folder (``spine_seg_nnunet_tasks/trainers``), appended to a
                         value the user set, so their own trainers stay visible
``nnUNet_def_n_proc``    ``cpus // 2`` clamped to 1–8 (nnU-Net's default is 8 whatever the machine)
``nnUNet_n_proc_DA``     ``0`` (augmentation in the main process) on machines with 4 CPUs or fewer;
                         left unset elsewhere (nnU-Net then uses ``min(12, cpus)`` workers)
=======================  ==========================================================================

``SPINESEG_HOME`` defaults to ``~/.spineseg`` (resolved by :mod:`spine_seg.core.home`, the one resolver).

Order matters: ``nnunetv2.configuration`` reads ``nnUNet_def_n_proc`` once, at import, and nnU-Net
releases before 2.8 read the three paths at import of ``nnunetv2.paths``. So call :func:`apply` before the
first ``import nnunetv2…``; spineseg's own modules import nnU-Net only inside functions, after ``apply``.
This module itself never imports nnU-Net or torch.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_seg.core.errors import UsageError, UserError
from spine_seg.core.home import HOME_VAR, spineseg_home

log = logging.getLogger(__name__)

RAW_VAR = "nnUNet_raw"
PREPROCESSED_VAR = "nnUNet_preprocessed"
RESULTS_VAR = "nnUNet_results"
PATH_VARS: tuple[str, ...] = (RAW_VAR, PREPROCESSED_VAR, RESULTS_VAR)
EXT_TRAINER_VAR = "nnUNet_extTrainer"
N_PROC_VAR = "nnUNet_def_n_proc"
N_PROC_DA_VAR = "nnUNet_n_proc_DA"
#: At or below this many CPUs, data augmentation runs in the main process (``nnUNet_n_proc_DA=0``).
SMALL_MACHINE_CPUS = 4


class NnunetEnvError(UserError, RuntimeError):
    """A folder nnU-Net needs is missing or not writable; the message names the variable to set."""


@dataclass(frozen=True)
class NnunetEnv:
    """What :func:`resolve` decided: the values, and where each came from (``user`` or ``spineseg``)."""

    home: Path
    raw: Path
    preprocessed: Path
    results: Path
    ext_trainer: str
    n_proc: str
    n_proc_da: str | None
    source: Mapping[str, str] = field(default_factory=dict)

    def path_of(self, var: str) -> Path:
        return {RAW_VAR: self.raw, PREPROCESSED_VAR: self.preprocessed, RESULTS_VAR: self.results}[var]

    def as_environ(self) -> dict[str, str]:
        env = {
            RAW_VAR: str(self.raw),
            PREPROCESSED_VAR: str(self.preprocessed),
            RESULTS_VAR: str(self.results),
            EXT_TRAINER_VAR: self.ext_trainer,
            N_PROC_VAR: self.n_proc,
        }
        if self.n_proc_da is not None:
            env[N_PROC_DA_VAR] = self.n_proc_da
        return env


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask where the platform has one, as in containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def trainers_dir() -> Path:
    """Folder of spineseg's nnU-Net trainer variants, located without importing it (it imports nnU-Net)."""
    spec = importlib.util.find_spec("spine_seg_nnunet_tasks")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "trainers"
    # a source checkout that is not installed: nnunet_tasks/ next to spine_seg/
    return Path(__file__).resolve().parents[2] / "nnunet_tasks" / "trainers"  # pragma: no cover


def resolve(environ: Mapping[str, str] | None = None, cpus: int | None = None) -> NnunetEnv:
    """Work out nnU-Net's environment from ``environ`` (default ``os.environ``) without changing anything."""
    environ = os.environ if environ is None else environ
    cpus = cpu_count() if cpus is None else cpus
    source: dict[str, str] = {}

    home_value = environ.get(HOME_VAR, "").strip()
    home = spineseg_home(environ)
    paths: dict[str, Path] = {}
    for var in PATH_VARS:
        value = environ.get(var, "").strip()
        if value:
            paths[var] = Path(value).expanduser()
            source[var] = "user"
        else:
            paths[var] = home / var
            source[var] = HOME_VAR if home_value else f"{HOME_VAR} default"

    ours = str(trainers_dir())
    user_ext = [p for p in environ.get(EXT_TRAINER_VAR, "").split(os.pathsep) if p.strip()]
    if user_ext:
        source[EXT_TRAINER_VAR] = "user + spineseg"
        ext = os.pathsep.join(user_ext if ours in user_ext else [*user_ext, ours])
    else:
        ext = ours

    if environ.get(N_PROC_VAR, "").strip():
        n_proc, source[N_PROC_VAR] = environ[N_PROC_VAR].strip(), "user"
    else:
        n_proc = str(min(8, max(1, cpus // 2)))
    n_proc_da: str | None
    if environ.get(N_PROC_DA_VAR, "").strip():
        n_proc_da, source[N_PROC_DA_VAR] = environ[N_PROC_DA_VAR].strip(), "user"
    else:
        n_proc_da = "0" if cpus <= SMALL_MACHINE_CPUS else None

    return NnunetEnv(home, paths[RAW_VAR], paths[PREPROCESSED_VAR], paths[RESULTS_VAR], ext, n_proc, n_proc_da, source)


def _how_to_fix(var: str, env: NnunetEnv) -> str:
    if env.source.get(var) == "user":
        return f"set {var} to a writable folder"
    return f"set {HOME_VAR} (or {var}) to a writable folder"


def check_folder(var: str, env: NnunetEnv, create: bool = True) -> Path:
    """Make sure the folder of ``var`` exists (creating it) and is writable; else raise naming ``var``."""
    path = env.path_of(var)
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise NnunetEnvError(f"{var} folder {path} cannot be created ({reason}): {_how_to_fix(var, env)}") from exc
    if not path.is_dir():
        raise NnunetEnvError(f"{var} folder {path} does not exist: {_how_to_fix(var, env)}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise NnunetEnvError(f"{var} folder {path} is not writable: {_how_to_fix(var, env)}")
    return path


def apply(
    require: Iterable[str] = PATH_VARS,
    environ: MutableMapping[str, str] | None = None,
    create: bool = True,
) -> NnunetEnv:
    """Set nnU-Net's variables in ``environ`` (default ``os.environ``) where the user has not, and check folders.

    ``require`` names the path variables whose folders must exist and be writable (created when ``create``):
    all three to plan and train, none to predict from a result folder. Call before importing nnunetv2.
    """
    target = os.environ if environ is None else environ
    env = resolve(target)
    target.update(env.as_environ())
    for var in require:
        if var not in PATH_VARS:
            raise UsageError(f"unknown nnU-Net path variable {var!r}; valid: {list(PATH_VARS)}")
        check_folder(var, env, create=create)
    if target is os.environ:
        _check_import_order(env)
    return env


def _check_import_order(env: NnunetEnv) -> None:
    """nnU-Net imported before :func:`apply` may hold stale values; fail for paths, warn for worker counts."""
    paths_mod = sys.modules.get("nnunetv2.paths")
    if paths_mod is not None:
        for var in PATH_VARS:
            held: Any = getattr(paths_mod, var, None)
            held = held.get() if hasattr(held, "get") else held  # nnunetv2 >= 2.8 reads the variable lazily
            if held is not None and str(held) != str(env.path_of(var)):
                raise NnunetEnvError(
                    f"nnunetv2 was imported before spineseg set {var} and holds {held!r}, not "
                    f"{str(env.path_of(var))!r}: "
                    f"set {var} before starting Python, or call spine_seg.segmentation.nnunet_env.apply() before "
                    "importing nnunetv2"
                )
    conf = sys.modules.get("nnunetv2.configuration")
    if conf is not None and str(getattr(conf, "default_num_processes", env.n_proc)) != env.n_proc:
        log.warning(
            "nnunetv2 was imported before spineseg set %s=%s; it keeps %s worker processes for this Python session",
            N_PROC_VAR,
            env.n_proc,
            conf.default_num_processes,
        )


def main() -> None:
    """``python -m spine_seg.segmentation.nnunet_env``: print ``export`` lines for nnU-Net's own commands."""
    import shlex

    env = resolve()
    for key, value in env.as_environ().items():
        print(f"export {key}={shlex.quote(value)}  # {env.source.get(key, 'spineseg')}")


if __name__ == "__main__":  # pragma: no cover
    main()
