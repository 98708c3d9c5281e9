from __future__ import annotations

import numpy as np
import pytest

from spine_seg import geometry as G


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
