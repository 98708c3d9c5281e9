"""Every closed set of choices, as ``StrEnum``s: the one source for the library, the CLI's help and checks.

A member *is* its string (``Device.CPU == "cpu"``, ``json.dumps`` writes ``"cpu"``), so results and files
read the same as before the enums existed, and callers may pass plain strings.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from spine_seg.core.errors import UsageError


class Device(StrEnum):
    """Where torch / nnU-Net run: ``auto`` is CUDA when present, else the CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Budget(StrEnum):
    """nnU-Net plans: ``cpu`` (nnUNetPlans_CPUBudget), ``default`` (nnUNetPlans); ``auto`` = cpu without a GPU."""

    AUTO = "auto"
    CPU = "cpu"
    DEFAULT = "default"


class Engine(StrEnum):
    """Where ``predict`` runs its studies: this process, or Ray actors."""

    LOCAL = "local"
    RAY = "ray"


class RowSource(StrEnum):
    """Where a submission row's probabilities came from (``StudyResult.sources``)."""

    MODEL = "model"
    FALLBACK = "axial_fallback"
    PRIOR = "prior"


#: The row sources as plain strings (what ``StudyResult.sources`` and ``result.json`` hold).
SOURCE_MODEL: str = RowSource.MODEL.value
SOURCE_FALLBACK: str = RowSource.FALLBACK.value
SOURCE_PRIOR: str = RowSource.PRIOR.value


class BatchStatus(StrEnum):
    """What became of one study in a batch."""

    DONE = "done"
    RESUMED = "resumed"  # finished by an earlier run
    FAILED = "failed"


class CrossCheck(StrEnum):
    """When the Sagittal T1 is segmented too, to check the Sagittal T2's level names: ``always``; ``unsure``
    (only when the T2's names are unsure); ``never``; ``auto``: always on CUDA, where it costs about a second,
    else only when unsure (a second segmentation on a CPU is another ~8 s)."""

    AUTO = "auto"
    ALWAYS = "always"
    UNSURE = "unsure"
    NEVER = "never"


class Mirroring(StrEnum):
    """Test-time mirroring of the segmentation: ``superior_inferior`` (the default) also predicts each slice
    upside down and averages, 2× the cost; ``all``: every axis (nnU-Net's own default, 4× in 2d); ``none``.
    On the real volumes the superior–inferior flip names the most levels right (docs/base-model.md)."""

    SUPERIOR_INFERIOR = "superior_inferior"
    ALL = "all"
    NONE = "none"


class Precision(StrEnum):
    """Arithmetic of the segmentation network on a CPU: ``auto`` (the default) is ``bfloat16`` where the CPU
    computes it natively (AVX512-BF16 or AMX: about half the time, the same levels named on the real volumes,
    docs/base-model.md) and ``float32`` elsewhere, where bfloat16 would be emulated and slower. On CUDA nnU-Net
    always predicts in float16 mixed precision and this choice does not apply."""

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


def values(choices: Iterable[StrEnum]) -> tuple[str, ...]:
    """The plain string values of an enum (or a subset of its members), in declaration order."""
    return tuple(str(c.value) for c in choices)


def choice_help(choices: type[StrEnum]) -> str:
    """An option's ``--help`` text from its enum: the values, then the enum's docstring (its first paragraph),
    so that the help, the check and the library read from one place."""
    doc = " ".join((choices.__doc__ or "").split("\n\n")[0].split())
    return f"{' | '.join(values(choices))}: {doc}"


def check_choice(kind: str, value: str, valid: Iterable[str]) -> str:
    """``value`` if it is one of ``valid``, else ``ValueError("unknown <kind> '<value>'; valid: a, b")``."""
    valid = tuple(str(v) for v in valid)
    if value not in valid:
        raise UsageError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")
    return value


def check_option(flag: str, value: str, valid: Iterable[str]) -> str:
    """The command-line form of :func:`check_choice`: ``--flag: unknown value 'x'; valid: ['a', 'b']``."""
    valid = tuple(str(v) for v in valid)
    if value not in valid:
        raise UsageError(f"{flag}: unknown value {value!r}; valid: {list(valid)}")
    return value
