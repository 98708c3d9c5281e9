"""spine_seg.core.textio: CSV encodings detected or refused naming the file; JSON without NaN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spine_seg.core import textio

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
cells = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters=',"\x7f'), min_size=1, max_size=12
)


@PROPS
@given(
    st.lists(st.tuples(cells, cells), min_size=1, max_size=5),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"]),
)
def test_csv_round_trip_in_unicode_encodings(tmp_path: Path, rows, encoding):
    text = "a,b\n" + "".join(f"{x},{y}\n" for x, y in rows)
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode(encoding))
    assert textio.read_text(path) == text


@PROPS
@given(st.lists(st.tuples(cells, cells), min_size=1, max_size=5))
def test_latin1_round_trip(tmp_path: Path, rows):
    rows = [
        (x.encode("latin-1", "replace").decode("latin-1"), y.encode("latin-1", "replace").decode("latin-1"))
        for x, y in rows
    ]
    text = "a,b\n" + "".join(f"{x},{y}\n" for x, y in rows) + "caf\xe9,\xfc\n"  # never valid UTF-8
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("latin-1"))
    assert textio.read_text(path) == text


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "binary content"),
        (bytes(range(1, 32)) * 10 + b"\xff", "control bytes"),
    ],
)
def test_binary_is_refused_naming_the_file(tmp_path: Path, data: bytes, message: str):
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"x\.csv: .*{message}"):
        textio.read_csv(path)


@PROPS
@given(
    st.recursive(
        st.one_of(st.floats(), st.integers(), st.text(max_size=5), st.none()),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
        max_leaves=20,
    )
)
def test_dumps_is_always_valid_json(obj):
    def refuse(name):
        raise AssertionError(name)

    json.loads(textio.dumps(obj), parse_constant=refuse)
