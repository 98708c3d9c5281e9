"""The dataset registry, `verify` on real and broken folders, and `fetch` from a loopback HTTP server.

No test leaves 127.0.0.1: downloads come from an in-process server, reached through `--url` or
SPINESEG_FETCH_BASE_URL, exactly as a mirror would be.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import tomllib
import urllib.parse
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from typer.testing import CliRunner

from spine_seg_cli.main import app
from spine_seg_external_data import (
    BASE_URL_ENV,
    ChecksumMismatch,
    DownloadError,
    ManualDownloadRequired,
    Registry,
    RegistryError,
    UnknownDatasetError,
    UnsafeArchiveError,
    extract_archive,
    fetch,
    get_dataset,
    load_registry,
    verify,
)

runner = CliRunner()
NAMES = {"spider", "rsna2024", "myosegmentum"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ------------------------------------------------------------------------------- loopback server


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` (path → bytes or a Path to read), with optional Range support."""

    def do_GET(self) -> None:
        srv: Any = self.server
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        srv.log.append((path, self.headers.get("Range")))
        body = srv.files.get(path)
        if body is None:
            self.send_error(404)
            return
        if isinstance(body, Path):
            body = body.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.ranges:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("no_proxy", "*")  # never route loopback through a proxy from the environment
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    srv: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.log, srv.ranges = {}, [], True
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _closed_port_url(name: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


# ------------------------------------------------------------------------- a tiny test registry

TINY_ZIP = _zip({"images/1_t1.mha": b"image one", "images/2_t1.mha": b"image two"})
META = b"new_file_name\n1_t1\n2_t1\n"


def _tiny_registry(zip_sha: str | None = None, reported: str | None = None) -> Registry:
    download: dict[str, Any] = {
        "filename": "tiny.zip",
        "url": "https://example.invalid/tiny.zip",
        "extract": True,
        "sha256": zip_sha if zip_sha is not None else _sha(TINY_ZIP),
    }
    if reported:
        download["reported_sha256"] = {"value": reported, "source": "a test"}
    entry = {
        "name": "tiny",
        "title": "Tiny",
        "landing_url": "https://example.invalid/",
        "licence": "CC0-1.0",
        "citation": {"reference": "Nobody. Tiny. 2024.", "doi": None},
        "contents": "two images",
        "access": "direct",
        "manual_download": "Get tiny.zip and meta.csv from example.invalid.",
        "downloads": [download, {"filename": "meta.csv", "url": "https://example.invalid/meta.csv", "sha256": None}],
        "layout": {
            "files": [{"path": "meta.csv", "sha256": _sha(META)}],
            "globs": [{"pattern": "images/*.mha", "min_count": 2}],
        },
    }
    return Registry.from_dict({"datasets": [entry]}, "tiny-registry")


# ------------------------------------------------------------------------------------- registry


def test_registry_entries_have_the_required_fields():
    reg = load_registry()
    assert set(reg.names) == NAMES
    for ds in reg.datasets.values():
        raw = ds.to_dict()
        for key in (
            "name",
            "title",
            "landing_url",
            "urls",
            "licence",
            "citation",
            "contents",
            "layout",
            "manual_download",
        ):
            assert raw.get(key), f"{ds.name}: {key}"
        assert ds.citation["reference"] and "doi" in ds.citation
        assert ds.files or ds.globs
        for spec in ds.files:
            assert spec.sha256 is None or HEX64.match(spec.sha256)
        for d in ds.downloads:
            assert d.url.startswith("https://") and d.filename
    spider, rsna, myo = (reg.get(n) for n in ("spider", "rsna2024", "myosegmentum"))
    assert spider.citation["doi"] == "10.1038/s41597-024-03090-w" and spider.licence == "CC-BY-4.0"
    assert {d.filename for d in spider.downloads} == {
        "images.zip",
        "masks.zip",
        "overview.csv",
        "radiological_gradings.csv",
    }
    assert all(d.sha256 is None for d in spider.downloads)  # archive checksums are not known here
    assert {g.pattern: g.min_count for g in spider.globs} == {"images/*.mha": 447, "masks/*.mha": 447}
    assert rsna.access == "kaggle" and not rsna.downloads
    by_path = {f.path: f for f in rsna.files}
    assert by_path["train_label_coordinates.csv"].sha256 is None
    assert (
        by_path["train_label_coordinates.fix01b.csv"].optional and by_path["train_label_coordinates.fix01b.csv"].sha256
    )
    assert [f.path for f in myo.files] == [f"{i:02d}.mat" for i in range(1, 21)]
    assert all(f.sha256 for f in myo.files) and len(myo.downloads) == 20


def test_registry_ships_as_package_data():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "*.json" in cfg["tool"]["setuptools"]["package-data"]["spine_seg_external_data"]
    assert json.loads((REPO / "external_data" / "registry.json").read_text(encoding="utf-8"))["datasets"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Bad Name", "name"),
        ("access", "ftp", "access"),
        ("layout", {"files": [{"path": "../x", "sha256": None}]}, "'..'"),
        ("layout", {"files": [{"path": "x", "sha256": "abc"}]}, "sha256"),
        ("layout", {"globs": [{"pattern": "*.mha", "min_count": 0}]}, "min_count"),
        ("title", "", "title"),
    ],
)
def test_registry_rejects_malformed_entries(field: str, value: Any, message: str):
    entry = _tiny_registry().get("tiny").to_dict()
    entry[field] = value
    with pytest.raises(RegistryError, match=re.escape(message)):
        Registry.from_dict({"datasets": [entry]}, "bad")


def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownDatasetError, match="choose one of: spider, rsna2024, myosegmentum"):
        get_dataset("spyder")


# --------------------------------------------------------------------------------------- verify


@pytest.mark.real_data
def test_verify_real_myosegmentum_is_complete(shared_data: Path):
    report = verify("myosegmentum", shared_data / "myosegmentum")
    assert report.complete, report.problems
    assert sum("sha256 ok" in line for line in report.ok) == 20


@pytest.mark.real_data
def test_verify_real_spider_reports_missing_images_and_masks(shared_data: Path):
    report = verify("spider", shared_data / "spider")
    assert not report.complete
    assert {(p.kind, p.path) for p in report.problems} == {("missing", "images/*.mha"), ("missing", "masks/*.mha")}
    assert "overview.csv (sha256 ok)" in report.ok and "radiological_gradings.csv (sha256 ok)" in report.ok


@pytest.mark.real_data
def test_verify_real_rsna_copy_checksums_match(shared_data: Path):
    report = verify("rsna2024", shared_data / "rsna2024")
    assert {(p.kind, p.path) for p in report.problems} == {
        ("missing", "train_label_coordinates.csv"),
        ("too_few", "train_images/*"),
        ("too_few", "train_images/*/*/*.dcm"),
    }
    assert "train_label_coordinates.fix01b.csv (sha256 ok)" in report.ok
    assert sum("sha256 ok" in line for line in report.ok) == 5


@pytest.mark.real_data
def test_verify_names_a_missing_file_and_a_bad_checksum(shared_data: Path, tmp_path: Path):
    src = shared_data / "myosegmentum"
    for i in range(1, 19):  # 01..18 as links, 19 missing, 20 corrupted
        (tmp_path / f"{i:02d}.mat").symlink_to(src / f"{i:02d}.mat")
    (tmp_path / "20.mat").write_bytes(b"not the real file")
    report = verify("myosegmentum", tmp_path)
    assert not report.complete
    assert [(p.kind, p.path) for p in report.problems] == [("missing", "19.mat"), ("checksum", "20.mat")]
    assert _sha(b"not the real file") in report.problems[1].detail


def test_verify_counts_and_checksums_on_a_tmp_dir(tmp_path: Path):
    reg = _tiny_registry()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1_t1.mha").write_bytes(b"x")
    (tmp_path / "meta.csv").write_bytes(b"edited\n")
    report = verify("tiny", tmp_path, registry=reg)
    assert [(p.kind, p.path) for p in report.problems] == [("checksum", "meta.csv"), ("too_few", "images/*.mha")]
    assert "1 found, at least 2 expected" in report.problems[1].detail
    (tmp_path / "meta.csv").write_bytes(META)
    (tmp_path / "images" / "2_t1.mha").write_bytes(b"y")
    assert verify("tiny", tmp_path, registry=reg).complete


def test_verify_missing_folder_is_a_user_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        verify("spider", tmp_path / "nowhere")
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        verify("spider", tmp_path / "f")


# ------------------------------------------------------------------------------------- extract


@pytest.mark.parametrize("bad", ["../evil.txt", "/abs/evil.txt", "images/../../evil.txt"])
def test_extract_refuses_members_outside_dest(tmp_path: Path, bad: str):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"images/ok.mha": b"ok", bad: b"evil"}))
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        extract_archive(archive, dest)
    assert not any(dest.rglob("*")), "nothing may be written when one member is refused"
    assert not (tmp_path / "evil.txt").exists()


def test_extract_tar_refuses_traversal_and_links_but_takes_plain_members(tmp_path: Path):
    def tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
        with tarfile.open(path, "w:gz") as tf:
            for m in members:
                tf.addfile(m, io.BytesIO(b"data") if m.isfile() else None)
        return path

    def info(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        m = tarfile.TarInfo(name)
        m.type, m.size = kind, 4 if kind == tarfile.REGTYPE else 0
        if kind == tarfile.SYMTYPE:
            m.linkname = "/etc"
        return m

    with pytest.raises(UnsafeArchiveError):
        extract_archive(tar(tmp_path / "t1.tar.gz", [info("../up.txt")]), tmp_path / "d1")
    with pytest.raises(UnsafeArchiveError, match="link"):
        extract_archive(tar(tmp_path / "t2.tar.gz", [info("etc", tarfile.SYMTYPE)]), tmp_path / "d2")
    assert extract_archive(tar(tmp_path / "t3.tar.gz", [info("masks/1_t1.mha")]), tmp_path / "d3") == ["masks/1_t1.mha"]
    assert (tmp_path / "d3" / "masks" / "1_t1.mha").read_bytes() == b"data"


# --------------------------------------------------------------------------------------- fetch


def test_fetch_end_to_end_from_loopback(server: Any, tmp_path: Path):
    server.files = {"/mirror/tiny.zip": TINY_ZIP, "/mirror/meta.csv": META}
    notes: list[str] = []
    progress: list[tuple[str, int, int | None]] = []
    reg = _tiny_registry(reported="0" * 64)
    dest = tmp_path / "tiny"
    report = fetch(
        "tiny",
        dest,
        base_url=f"{server.base}/mirror/",
        registry=reg,
        log=notes.append,
        progress=lambda *a: progress.append(a),
    )
    assert report.complete, report.problems
    assert (dest / "images" / "2_t1.mha").read_bytes() == b"image two"
    assert not (dest / "tiny.zip").exists() and not list(dest.glob("*.part"))  # archive removed once extracted
    assert (dest / ".tiny.zip.extracted").read_text().strip() == _sha(TINY_ZIP)
    assert progress[-1] == ("meta.csv", len(META), len(META))
    assert not any("warning" in n for n in notes)  # reported_sha256 only matters when sha256 is unknown
    n_requests = len(server.log)
    again = fetch("tiny", dest, base_url=f"{server.base}/mirror", registry=reg, log=notes.append)
    assert again.complete and len(server.log) == n_requests  # nothing downloaded twice
    assert "already complete" in notes[-1]


def test_fetch_warns_when_a_third_party_checksum_disagrees(server: Any, tmp_path: Path):
    server.files = {"/tiny.zip": TINY_ZIP, "/meta.csv": META}
    notes: list[str] = []
    reg = Registry.from_dict({"datasets": [_tiny_registry().get("tiny").to_dict()]})
    entry = reg.get("tiny").to_dict()
    entry["downloads"][0].update(sha256=None, reported_sha256={"value": "0" * 64, "source": "a test"})
    reg = Registry.from_dict({"datasets": [entry]})
    assert fetch("tiny", tmp_path, base_url=server.base, registry=reg, log=notes.append).complete
    assert any("warning: tiny.zip" in n and "a test" in n for n in notes)


def test_fetch_checksum_mismatch_discards_the_download(server: Any, tmp_path: Path):
    server.files = {"/tiny.zip": _zip({"images/1_t1.mha": b"tampered"}), "/meta.csv": META}
    with pytest.raises(ChecksumMismatch, match="expected " + _sha(TINY_ZIP)):
        fetch("tiny", tmp_path, base_url=server.base, registry=_tiny_registry())
    assert not (tmp_path / "tiny.zip").exists() and not (tmp_path / "tiny.zip.part").exists()
    assert not (tmp_path / "images").exists()


def test_fetch_checks_plain_files_against_the_layout_checksum(server: Any, tmp_path: Path):
    server.files = {"/tiny.zip": TINY_ZIP, "/meta.csv": b"edited upstream\n"}
    with pytest.raises(ChecksumMismatch, match="meta.csv"):
        fetch("tiny", tmp_path, base_url=server.base, registry=_tiny_registry())


def test_fetch_refuses_a_path_traversal_member(server: Any, tmp_path: Path):
    server.files = {"/evil.zip": _zip({"images/1_t1.mha": b"ok", "../../escaped.txt": b"evil"})}
    dest = tmp_path / "a" / "b"
    with pytest.raises(UnsafeArchiveError, match=r"\.\./\.\./escaped\.txt"):
        fetch("tiny", dest, url=f"{server.base}/evil.zip", registry=_tiny_registry())
    assert not (tmp_path / "escaped.txt").exists() and not (dest / "images").exists()
    assert not (dest / "evil.zip").exists()


@pytest.mark.parametrize("ranges", [True, False])
def test_fetch_resumes_a_partial_download_or_restarts_cleanly(server: Any, tmp_path: Path, ranges: bool):
    server.files, server.ranges = {"/tiny.zip": TINY_ZIP, "/meta.csv": META}, ranges
    half = len(TINY_ZIP) // 2
    # with Range support the kept prefix is genuine; without it, junk that must be thrown away
    (tmp_path / "tiny.zip.part").write_bytes(TINY_ZIP[:half] if ranges else b"\xff" * half)
    assert fetch("tiny", tmp_path, base_url=server.base, registry=_tiny_registry()).complete
    assert ("/tiny.zip", f"bytes={half}-") in server.log


def test_fetch_unreachable_host_is_one_clear_error(server: Any, tmp_path: Path):
    url = _closed_port_url("tiny.zip")
    with pytest.raises(DownloadError) as err:
        fetch("tiny", tmp_path, url=url, registry=_tiny_registry(), timeout=5)
    msg = str(err.value)
    assert url in msg and "by hand" in msg and "\n" not in msg
    server.files = {}
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch("tiny", tmp_path, url=f"{server.base}/gone.zip", registry=_tiny_registry())


def test_fetch_rsna_explains_kaggle_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def no_network(*_a: Any, **_k: Any) -> None:
        raise AssertionError("rsna2024 must not touch the network")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(ManualDownloadRequired, match="kaggle competitions download -c rsna-2024-lumbar-spine"):
        fetch("rsna2024", tmp_path / "rsna")
    assert not (tmp_path / "rsna").exists()


# ----------------------------------------------------------------------------------------- CLI


def test_cli_list_table_and_json():
    res = runner.invoke(app, ["data", "list"])
    assert res.exit_code == 0, res.output
    for name in NAMES:
        assert name in res.stdout
    assert "CC-BY-4.0" in res.stdout and "https://zenodo.org/records/10159290" in res.stdout
    res = runner.invoke(app, ["data", "list", "--json"])
    doc = json.loads(res.stdout)
    assert {d["name"] for d in doc["datasets"]} == NAMES
    assert all(d["licence"] and d["citation"]["reference"] for d in doc["datasets"])


@pytest.mark.real_data
def test_cli_verify_real_data(shared_data: Path):
    res = runner.invoke(app, ["data", "verify", "myosegmentum", str(shared_data / "myosegmentum")])
    assert res.exit_code == 0, res.output
    assert "complete" in res.stdout
    res = runner.invoke(app, ["data", "verify", "spider", str(shared_data / "spider"), "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert not doc["complete"] and {p["path"] for p in doc["problems"]} == {"images/*.mha", "masks/*.mha"}
    res = runner.invoke(app, ["data", "verify", "spider", str(shared_data / "spider")])
    assert res.exit_code == 1 and "images/*.mha" in res.stdout and "masks/*.mha" in res.stdout


def test_cli_user_errors_exit_2(tmp_path: Path):
    res = runner.invoke(app, ["data", "verify", "spyder", str(tmp_path)])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "spider, rsna2024, myosegmentum" in res.stderr
    res = runner.invoke(app, ["data", "verify", "spider", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = runner.invoke(app, ["data", "fetch", "rsna2024", "--dest", str(tmp_path / "r")])
    assert res.exit_code == 2 and "kaggle competitions download" in res.stderr
    res = runner.invoke(app, ["data", "fetch", "nope", "--dest", str(tmp_path / "n")])
    assert res.exit_code == 2 and "choose one of" in res.stderr


@pytest.mark.real_data
def test_cli_fetch_myosegmentum_from_a_loopback_mirror(
    server: Any, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    src = shared_data / "myosegmentum"
    server.files = {f"/m/{p.name}": p for p in src.glob("*.mat")}
    monkeypatch.setenv(BASE_URL_ENV, f"{server.base}/m")
    dest = tmp_path / "myo"
    res = runner.invoke(app, ["data", "fetch", "myosegmentum", "--dest", str(dest)])
    assert res.exit_code == 0, res.output
    assert "myosegmentum: complete" in res.stdout and "MiB" in res.stderr
    assert sorted(p.name for p in dest.iterdir()) == [f"{i:02d}.mat" for i in range(1, 21)]


def test_cli_fetch_failures_exit_1(server: Any, tmp_path: Path):
    server.files = {"/evil.zip": _zip({"../escaped.txt": b"evil"})}
    res = runner.invoke(
        app, ["data", "fetch", "spider", "--dest", str(tmp_path / "s"), "--url", f"{server.base}/evil.zip"]
    )
    assert res.exit_code == 1 and "refusing to extract evil.zip" in res.stderr
    assert not (tmp_path / "escaped.txt").exists()
    url = _closed_port_url("images.zip")
    res = runner.invoke(app, ["data", "fetch", "spider", "--dest", str(tmp_path / "s"), "--url", url])
    assert res.exit_code == 1
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert url in line and "zenodo.org/records/10159290" in line
    server.files = {"/images.zip": _zip({"images/1_t1.mha": b"one"})}
    res = runner.invoke(
        app, ["data", "fetch", "spider", "--dest", str(tmp_path / "s"), "--url", f"{server.base}/images.zip"]
    )
    assert res.exit_code == 1 and "1 found, at least 447 expected" in res.stdout  # fetched, but incomplete
