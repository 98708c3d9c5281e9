from __future__ import annotations

import numpy as np
import pytest

from spine_seg.core import geometry as G


def test_affine_roundtrip_oblique():
    iop = (0.999, 0.03, -0.042, -0.02, 0.976, 0.216)
    r = np.array(iop[:3]) / np.linalg.norm(iop[:3])
    c = np.array(iop[3:]) - np.dot(iop[3:], r) * r
    c /= np.linalg.norm(c)
    iop = (*r, *c)
    aff = G.affine_from_headers((-68.6, -18.0, -566.9), iop, (0.5, 0.6), 3.5)
    ijk = np.array([[0, 0, 0], [10.5, 3.0, 2.0], [319, 319, 8]])
    xyz = G.voxel_to_world(aff, ijk)
    np.testing.assert_allclose(G.world_to_voxel(aff, xyz), ijk, atol=1e-9)
    # column spacing scales i (x), row spacing scales j (y): PixelSpacing is (row, column)
    np.testing.assert_allclose(np.linalg.norm(aff[:3, 0]), 0.6)
    np.testing.assert_allclose(np.linalg.norm(aff[:3, 1]), 0.5)
    np.testing.assert_allclose(xyz[0], (-68.6, -18.0, -566.9))


def test_pixel_to_world_matches_affine_and_projection():
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    ipp = (10.0, -50.0, 30.0)
    w = G.pixel_to_world(ipp, iop, (0.5, 0.8), (100, 20))
    # x (column) runs along +P with 0.8 mm, y (row) along -S with 0.5 mm
    np.testing.assert_allclose(w, (10.0, -50.0 + 80.0, 30.0 - 10.0))
    x, y, d = G.world_to_pixel(ipp, iop, (0.5, 0.8), w + 2.0 * G.slice_normal(iop))
    assert (round(x, 9), round(y, 9), round(d, 9)) == (100, 20, 2.0)


def test_slice_normal_and_labels():
    np.testing.assert_allclose(G.slice_normal((1, 0, 0, 0, 1, 0)), (0, 0, 1))
    assert G.orientation_label((1, 0, 0, 0, 1, 0)) == "axial"
    assert G.orientation_label((0, 1, 0, 0, 0, -1)) == "sagittal"
    assert G.orientation_label((1, 0, 0, 0, 0, -1)) == "coronal"
    assert G.axis_codes((0, 1, 0, 0, 0, -1)) == "PF"
    assert G.obliquity_deg((1, 0, 0, 0, np.cos(0.2), np.sin(0.2))) == pytest.approx(np.degrees(0.2))
    with pytest.raises(ValueError, match="parallel"):
        G.slice_normal((1, 0, 0, 1, 0, 0))


def test_slice_step_vector_for_sheared_stack():
    # the step need not be along the normal (gantry tilt): the affine keeps it exactly
    step = np.array([0.3, 0.0, 3.0])
    aff = G.affine_from_headers((0, 0, 0), (1, 0, 0, 0, 1, 0), (1.0, 1.0), step)
    np.testing.assert_allclose(G.voxel_to_world(aff, (0, 0, 2)), 2 * step)


# ---------------------------------------------------------------------------------------------------------
# properties (hypothesis): random orientations, spacings and positions


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

finite = st.floats(min_value=-500.0, max_value=500.0, allow_nan=False, allow_infinity=False)
plausible_spacing = st.floats(min_value=G.SPACING_RANGE_MM[0], max_value=G.SPACING_RANGE_MM[1])
PROPS = settings(max_examples=60, deadline=None)


@st.composite
def orientations(draw) -> tuple[float, ...]:
    """A random orthonormal ImageOrientationPatient (row, column cosines) from a random rotation."""
    q = np.array([draw(st.floats(-1, 1)) for _ in range(4)])
    if np.linalg.norm(q) < 1e-3:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    w, x, y, z = q / np.linalg.norm(q)
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    return (*rot[:, 0], *rot[:, 1])


@PROPS
@given(
    orientations(),
    st.tuples(finite, finite, finite),
    st.tuples(plausible_spacing, plausible_spacing),
    st.floats(0.1, 20.0),
    st.tuples(st.floats(0, 511), st.floats(0, 511), st.floats(0, 60)),
)
def test_affine_round_trip_property(iop, ipp, spacing, step, ijk):
    assert G.iop_problem(iop) is None and G.spacing_problem(spacing) is None and G.position_problem(ipp) is None
    aff = G.affine_from_headers(ipp, iop, spacing, step)
    xyz = G.voxel_to_world(aff, np.asarray(ijk))
    np.testing.assert_allclose(G.world_to_voxel(aff, xyz), ijk, atol=1e-6 * max(1.0, max(ijk)) / min(spacing))
    # a pixel of the first slice comes back to itself, on the plane
    x, y, d = G.world_to_pixel(ipp, iop, spacing, G.pixel_to_world(ipp, iop, spacing, ijk[:2]))
    np.testing.assert_allclose((x, y, d), (ijk[0], ijk[1], 0.0), atol=1e-6 * max(1.0, max(ijk)) / min(spacing))
    assert G.orientation_label(iop) in ("sagittal", "coronal", "axial") and 0 <= G.obliquity_deg(iop) <= 54.8


@PROPS
@given(orientations(), st.floats(0.02, 1.0), st.sampled_from(["tilt", "scale"]))
def test_damaged_orientation_is_refused(iop, amount, how):
    v = np.array(iop)
    if how == "scale":
        v[:3] *= 1.0 + amount  # row cosine no longer unit
    else:
        v[3:] = v[3:] + amount * v[:3]  # column cosine leans towards the row cosine
        v[3:] /= np.linalg.norm(v[3:])
    assert G.iop_problem(v) is not None


@PROPS
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda s: not (0.05 <= s <= 20.0)),
        st.just(float("nan")),
        st.just(float("inf")),
        st.just(0.0),
    ),
    plausible_spacing,
)
def test_implausible_spacing_is_refused(bad, good):
    assert G.spacing_problem((bad, good)) is not None and G.spacing_problem((good, bad)) is not None
    assert G.spacing_problem((good, good)) is None


@PROPS
@given(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e6, -2e5]), st.integers(0, 2), orientations())
def test_non_finite_values_are_refused(bad, axis, iop):
    p = [1.0, 2.0, 3.0]
    p[axis] = bad
    assert G.position_problem(p) is not None
    v = list(iop)
    v[axis] = bad
    assert G.iop_problem(v) is not None


@PROPS
@given(
    st.tuples(st.integers(1, 64), st.integers(1, 1024), st.integers(1, 1024)),
    st.tuples(plausible_spacing, plausible_spacing, plausible_spacing),
    st.tuples(plausible_spacing, plausible_spacing),
    st.integers(1, 10**9),
)
def test_resample_budget_refuses_exactly_what_exceeds_it(shape, spacing, target, budget):
    new = G.resampled_shape(shape, spacing, target)
    assert new[0] == shape[0]  # a 2d target leaves the slice axis alone
    n = int(np.prod([float(v) for v in new]))
    if n > budget:
        with pytest.raises(ValueError, match="over the budget"):
            G.check_resample_budget(shape, spacing, target, budget)
    else:
        assert G.check_resample_budget(shape, spacing, target, budget) == new


def test_decimal_slip_is_refused_before_allocation():
    with pytest.raises(ValueError, match="would make"):
        G.check_resample_budget((18, 462, 448), (4.0, 75.8, 75.8), (0.5, 0.5), 2**27)
