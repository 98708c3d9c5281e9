"""The import-layer contract of docs/architecture.md: a lower layer never imports a higher one.

Every import statement (also those inside functions, which load lazily but still couple the code) of the
library, the CLI and the side packages is parsed with ``ast``; each module is placed in a layer by its
package, and an import of a module in a higher layer fails the test, naming both.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

#: Layers from the bottom up; a module may import its own layer and the ones below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("spine_seg.core",),
    ("spine_seg.dicom", "spine_seg_external_data"),
    ("spine_seg.synthetic",),
    ("spine_seg.segmentation", "spine_seg.landmarks", "spine_seg_nnunet_tasks"),
    ("spine_seg.measurements",),
    ("spine_seg.grading",),
    ("spine_seg.report", "spine_seg.dicom_out"),
    ("spine_seg.inference",),
    ("spine_seg.workflows", "spine_seg.api", "spine_seg"),
    ("spine_seg_cli",),
)
#: Where each installed package's source lives in the repository.
SOURCES = {
    "spine_seg": "spine_seg",
    "spine_seg_cli": "cli",
    "spine_seg_nnunet_tasks": "nnunet_tasks",
    "spine_seg_external_data": "external_data",
}


def layer_of(module: str) -> int | None:
    """The layer of a dotted module name (the longest matching prefix), None for third-party modules."""
    best: tuple[int, int] | None = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), level)
    return None if best is None else best[1]


def _modules(root: Path = REPO) -> dict[str, Path]:
    """Every module of :data:`SOURCES` under ``root`` (the repository, or a stand-in tree in a test)."""
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, base] if base else parent)
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def violations(root: Path = REPO) -> list[str]:
    """Every import under ``root`` of a module in a higher layer than the importer's, as ``file:line: …``.

    The one detector: the contract test runs it on the repository, and the test below on a planted upward
    import, so a detector that stopped seeing imports would fail there rather than pass here in silence.
    """
    modules = _modules(root)
    found = []
    for module, path in modules.items():
        own = layer_of(module)
        assert own is not None, f"{module} is in no layer: add it to LAYERS"
        for line, target in _imports(module, path):
            if target in modules or target.rsplit(".", 1)[0] in modules or layer_of(target) is not None:
                theirs = layer_of(target)
                if theirs is not None and theirs > own:
                    found.append(
                        f"{path.relative_to(root)}:{line}: {module} (layer {own}) imports {target} (layer {theirs})"
                    )
    return found


def test_no_lower_layer_imports_a_higher_one():
    found = violations()
    assert not found, "imports against the layers of docs/architecture.md:\n" + "\n".join(found)


def test_the_contract_catches_an_upward_import(tmp_path: Path):
    """A stand-in tree with upward imports of each form (plain, from, relative, lazy inside a function) and
    allowed ones: the detector the contract test uses reports exactly the upward ones, with file and line."""
    assert layer_of("spine_seg.core.geometry") < layer_of("spine_seg.inference.batch") < layer_of("spine_seg_cli.main")
    assert layer_of("numpy") is None
    files = {
        "spine_seg/__init__.py": "",
        "spine_seg/core/__init__.py": "",
        "spine_seg/core/geometry.py": (
            "import numpy as np\n"  # third party: no layer
            "from spine_seg.core import errors\n"  # own layer
            "import spine_seg.inference.batch\n"  # up: plain import
            "from spine_seg.report.figure import render_report\n"  # up: from-import
            "from ..grading import metric\n"  # up: relative
            "\n"
            "def later():\n"
            "    from spine_seg_cli.main import app\n"  # up: lazy, inside a function
            "    return app\n"
        ),
        "spine_seg/core/errors.py": "",
        "spine_seg/inference/__init__.py": "from spine_seg.core import geometry\n",  # down: allowed
        "spine_seg/inference/batch.py": "from ..dicom import model\n",  # down, relative: allowed
        "cli/main.py": "from spine_seg.inference import batch\n",  # down: allowed
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    geometry = "spine_seg/core/geometry.py:{}: spine_seg.core.geometry (layer 0) imports {}"

    def at(module: str) -> str:
        return f"{module} (layer {layer_of(module)})"

    assert violations(tmp_path) == [
        geometry.format(3, at("spine_seg.inference.batch")),
        geometry.format(4, at("spine_seg.report.figure")),
        geometry.format(4, at("spine_seg.report.figure.render_report")),
        geometry.format(5, at("spine_seg.grading")),
        geometry.format(5, at("spine_seg.grading.metric")),
        geometry.format(8, at("spine_seg_cli.main")),
        geometry.format(8, at("spine_seg_cli.main.app")),
    ]
