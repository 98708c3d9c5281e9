"""spine_seg.dicom.tags: header values parsed strictly (hypothesis properties and the cases that broke)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_seg.dicom import tags

PROPS = settings(max_examples=80, deadline=None)
finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)


def ds_text(v: float) -> str:
    return f"{v:.10g}"


@PROPS
@given(st.lists(finite, min_size=1, max_size=6))
def test_multi_value_round_trip(values):
    text = "\\".join(ds_text(v) for v in values)
    parsed = tags.parse_numbers(text, len(values), "X")
    assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) for a, b in zip(parsed, values, strict=True))
    assert tags.parse_numbers(list(values), len(values), "X") == tuple(float(v) for v in values)


@PROPS
@given(st.lists(finite, min_size=1, max_size=6), st.integers(1, 7))
def test_wrong_count_names_the_tag(values, n):
    if n == len(values):
        return
    with pytest.raises(tags.TagError, match=rf"^PixelSpacing = .*: {len(values)} values, {n} expected"):
        tags.parse_numbers("\\".join(ds_text(v) for v in values), n, "PixelSpacing")


@PROPS
@given(st.text(max_size=30))
def test_any_text_is_a_finite_number_or_a_tag_error(text):
    try:
        x = tags.parse_number(text, "SliceThickness")
    except tags.TagError as exc:
        assert str(exc).startswith("SliceThickness = ") and "\n" not in str(exc).split(": ", 1)[1]
    else:
        assert math.isfinite(x)
    assert tags.parse_instance_number(text) is None or isinstance(tags.parse_instance_number(text), int)


@PROPS
@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(["{}", " {} ", "{}.0", "+{}"]))
def test_integers_round_trip(i, fmt):
    text = fmt.format(i) if not (fmt == "+{}" and i < 0) else str(i)
    assert tags.parse_int(text, "InstanceNumber") == i
    assert tags.parse_instance_number(text) == i


@pytest.mark.parametrize("text", ["A1", "1.5", "nan", "inf", "", "  ", "1e400", "0x10", "\x00"])
def test_instance_numbers_that_are_not_integers(text):
    assert tags.parse_instance_number(text) is None


class FakeDs(SimpleNamespace):
    def get(self, key, default=None):
        return getattr(self, key, default)


VALID = {
    "ImagePositionPatient": "-12.5\\-60\\40",
    "ImageOrientationPatient": "0\\1\\0\\0\\0\\-1",
    "PixelSpacing": "0.8\\0.7",
    "Rows": "40",
    "Columns": "32",
}


@PROPS
@given(
    st.sampled_from(sorted(VALID)),
    st.sampled_from(["nan", "inf", "-inf", "x", "", "1e999", "0", "1\\2\\3\\4\\5\\6\\7"]),
)
def test_one_damaged_geometry_tag_is_named(tag, bad):
    ds = FakeDs(**{**VALID, tag: bad})
    with pytest.raises(tags.TagError) as err:
        tags.geometry_tags(ds)
    assert err.value.tag == tag and str(err.value).startswith(f"{tag} = ")


def test_valid_geometry_tags():
    ipp, iop, spacing, rows, columns = tags.geometry_tags(FakeDs(**VALID))
    assert ipp == (-12.5, -60.0, 40.0) and iop == (0.0, 1.0, 0.0, 0.0, 0.0, -1.0) and spacing == (0.8, 0.7)
    assert (rows, columns) == (40, 32)
