"""PIV readers (datamodules.piv_io) on real files and on files written by the tests in the formats' own layouts.

Real files (fetched once into ``$SYMBENCH_CACHE``, default ``~/.cache/symbench``, from the pivpy 0.4.0 wheel by
datamodules.fetch; the tests that need them skip with the reason when the fetch fails): the PIVMat air jet
(LaVision DaVis 7 ``B0000{1,2,3}.VC7``, read through lvpyio; skipped without it), the PIV Challenge field exported as
DaVis text with decimal commas, two OpenPIV text files and a PIVlab ``.mat`` in HDF5 layout.

Orientation under test everywhere: row 0 holds the largest y, columns run towards +x, u/v keep their sign."""

from __future__ import annotations

import os
import sys

import h5py
import numpy as np
import pytest
import scipy.io

from datamodules import fetch as of
from datamodules import piv_io as pi
from datamodules.piv_io import PIVField, read_piv, read_piv_series, write_tecplot


def _fetched(file):
    try:
        return of.fetch(file)
    except of.FetchError as e:
        pytest.skip(f"real PIV file unavailable (no network to PyPI?): {e}")


@pytest.fixture(scope="session")
def jet_files():
    pytest.importorskip("lvpyio", reason=f"lvpyio not installed ({pi.LVPYIO_INSTALL})")
    return _fetched(of.PIVPY_JET)


@pytest.fixture(scope="session")
def davis_txt_file():
    return _fetched(of.PIVPY_DAVIS_TXT)


@pytest.fixture(scope="session")
def openpiv_files():
    return _fetched(of.PIVPY_OPENPIV_TXT), _fetched(of.PIVPY_OPENPIV_FLAGS_TXT)


@pytest.fixture(scope="session")
def pivlab_file():
    return _fetched(of.PIVPY_PIVLAB_MAT)


def _field(h=5, w=7, x0=-3.0, y0=2.0, step=0.5, time=None) -> PIVField:
    """u = y, v = -2x on a grid in the suite's orientation, two vectors invalid."""
    x = x0 + step * np.arange(w)
    y = y0 + step * np.arange(h)[::-1]
    xx, yy = np.meshgrid(x, y)
    mask = np.ones((h, w), bool)
    mask[1, 2] = mask[h - 1, 0] = False
    return PIVField(x, y, yy, -2 * xx, mask, ("mm", "m/s"), time, "made")


def _cell(*frames: np.ndarray) -> np.ndarray:
    """A MATLAB cell array {frames, 1} of float matrices, as PIVlab's export writes it."""
    cell = np.empty((len(frames), 1), dtype=object)
    for i, a in enumerate(frames):
        cell[i, 0] = np.asarray(a, dtype=float)
    return cell


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------------- real files

def test_davis_vc7_jet_matches_lvpyio_in_suite_orientation(jet_files):
    import lvpyio

    assert [p.name for p in jet_files] == ["B00001.VC7", "B00002.VC7", "B00003.VC7"]
    f = read_piv(jet_files[0])
    assert f.shape == (128, 128) and f.u.dtype == np.float32 and f.mask.dtype == bool
    assert f.units == ("mm", "m/s") and f.time == pytest.approx(1.529976)
    # vectors every 16 px of 0.115125 mm at window centres; DaVis' y scale is negative: row 0 is the top
    assert f.dx == pytest.approx(1.842) and f.dy == pytest.approx(1.842)
    assert f.x[0] == pytest.approx(-133.474) and f.y[0] == pytest.approx(233.279) and f.y[0] > f.y[-1]
    assert (~f.mask).sum() == 985  # PIVMat reports 985 invalid vectors in this file
    raw = lvpyio.read_buffer(str(jet_files[0]))[0].as_masked_array()
    assert np.array_equal(f.mask, ~np.ma.getmaskarray(raw["u"]))
    np.testing.assert_array_equal(f.u, np.ma.filled(raw["u"], 0).astype(np.float32))
    np.testing.assert_array_equal(f.v, np.ma.filled(raw["v"], 0).astype(np.float32))
    assert (f.u[~f.mask] == 0).all() and np.isfinite(f.u).all() and np.isfinite(f.v).all()
    for path in jet_files:
        g = read_piv(path)
        assert 0.05 < 1 - g.mask.mean() < 0.08
        speed = np.hypot(g.u, g.v)[g.mask]
        assert 5 < np.percentile(speed, 90) < 20 and np.abs(speed).max() < 60  # m/s of a 12 m/s air jet


def test_jet_series_is_an_upward_jet_on_its_axis(jet_files):
    s = read_piv_series(list(reversed(jet_files)))  # sorted by file name whatever the order given
    assert s.velocity.shape == (3, 2, 128, 128) and s.velocity.dtype == np.float32 and s.mask.shape == (3, 128, 128)
    assert [p.name for p in s.paths] == ["B00001.VC7", "B00002.VC7", "B00003.VC7"]
    assert np.all(np.diff(s.times) > 0) and s.times[1] - s.times[0] == pytest.approx(0.248923)
    np.testing.assert_array_equal(s.velocity[1, 1], read_piv(jet_files[1]).v)
    assert 0.85 < s.common_mask.mean() < 0.95
    u, v = (np.ma.masked_array(s.velocity[:, k], ~s.mask).mean(axis=0) for k in (0, 1))
    profile = v.mean(axis=0)  # time- and height-averaged streamwise (vertical) velocity per column
    axis = int(np.argmax(profile))
    assert -35 < s.x[axis] < 0 and profile[axis] > 7  # the jet: a narrow band of strong upward flow
    assert np.abs(profile[s.x > 60]).max() < 1.0  # still air beside it
    assert abs(u[:, axis - 3:axis + 4].mean()) < 0.1 * profile[axis]  # streamwise = +y, not x
    core = v[:, axis - 3:axis + 4].mean(axis=1)  # along the axis, from the top row (largest y) down
    bottom, top = core[s.y < 60].mean(), core[s.y > 170].mean()  # nozzle below the field: decays upwards
    assert 10 < bottom < 14 and top < bottom - 1.5


def test_davis_text_with_decimal_commas(davis_txt_file):
    f = read_piv(davis_txt_file)
    assert pi.detect_format(davis_txt_file) == "davis_txt"
    assert f.shape == (64, 64) and f.units == ("mm", "m/s")
    assert f.x[0] == pytest.approx(-14.9635, abs=2e-3) and f.dx == pytest.approx(0.62105, abs=1e-4)
    assert f.y[0] == pytest.approx(32.4113, abs=2e-3) and f.y[-1] == pytest.approx(-6.71505, abs=2e-3)
    assert 0.60 < 1 - f.mask.mean() < 0.64  # the exported zero vectors (masked region) are invalid
    lines = davis_txt_file.read_text(encoding="latin-1").splitlines()[1:]
    rows = [[float(t.replace(",", ".")) for t in ln.split("\t")] for ln in lines]
    nonzero = [r for r in rows if r[2] != 0 and r[3] != 0]
    assert len(nonzero) > 1000 and f.mask.sum() == sum(1 for r in rows if r[2] != 0 or r[3] != 0)
    for x, y, u, v in nonzero[::97]:
        i, j = int(np.argmin(np.abs(f.y - y))), int(np.argmin(np.abs(f.x - x)))
        assert f.mask[i, j] and f.u[i, j] == np.float32(u) and f.v[i, j] == np.float32(v)


def test_openpiv_text_files(openpiv_files):
    plain, flagged = openpiv_files
    f = read_piv(plain)  # x y u v s2n, no header, y increasing down the file
    assert f.shape == (22, 30) and f.mask.all() and f.units == ("", "")
    assert f.x[0] == 16 and f.dx == 16 and f.y[0] == 352 and f.y[-1] == 16
    table = np.loadtxt(plain)
    for x, y, u, v, _ in table[::53]:
        i, j = int((352 - y) / 16), int((x - 16) / 16)
        assert f.u[i, j] == np.float32(u) and f.v[i, j] == np.float32(v)

    g = read_piv(flagged)  # "# x y u v flags mask" header, NaN where no vector
    table = np.loadtxt(flagged)
    assert g.shape == (32, 40) and np.isfinite(g.u).all()
    bad = np.isnan(table[:, 2:4]).any(axis=1) | (table[:, 4] != 0) | (table[:, 5] != 0)
    assert (~g.mask).sum() == bad.sum() and 0.5 < bad.mean() < 0.6
    i = np.rint((g.y[0] - table[:, 1]) / g.dy).astype(int)
    j = np.rint((table[:, 0] - g.x[0]) / g.dx).astype(int)
    assert np.array_equal(g.mask[i, j], ~bad)
    np.testing.assert_array_equal(g.u[i[~bad], j[~bad]], table[~bad, 2].astype(np.float32))


def test_pivlab_mat_hdf5_image_coordinates_turned_y_up(pivlab_file):
    f = read_piv(pivlab_file)
    second = read_piv(pivlab_file, frame=1)
    with h5py.File(pivlab_file) as h:
        u0, v0, tv0, y0 = (h[k][()].T for k in ("u_0", "v_0", "typevector_0", "y_0"))  # MATLAB (row, col)
        v1 = h["v_1"][()].T
    assert f.shape == u0.shape == (8, 10) and f.units == ("px", "px/frame")
    # PIVlab rows are image rows (top first) with y growing downwards: y and v are negated, row 0 stays on top
    assert y0[0, 0] < y0[-1, 0] and np.array_equal(f.y, -y0[:, 0]) and f.y[0] == -4
    assert np.array_equal(f.mask, tv0 == 1) and not f.mask[0, 0]
    np.testing.assert_array_equal(f.u, np.where(tv0 == 1, u0, 0).astype(np.float32))
    np.testing.assert_array_equal(f.v, np.where(tv0 == 1, -v0, 0).astype(np.float32))
    assert np.array_equal(second.v[second.mask], (-v1).astype(np.float32)[second.mask])
    with pytest.raises(ValueError, match="frame 2 out of range") as e:
        read_piv(pivlab_file, frame=2)
    _one_line(e)


# --------------------------------------------------------------------------------------------------- written files

def test_tecplot_round_trip_keeps_values_mask_and_orientation(tmp_path):
    f = _field(time=0.25)
    path = write_tecplot(tmp_path / "jet.dat", f)
    assert [p.name for p in tmp_path.iterdir()] == ["jet.dat"]  # no temporary file left behind
    text = path.read_text().splitlines()
    assert text[1] == 'VARIABLES = "x [mm]", "y [mm]", "u [m/s]", "v [m/s]", "isValid"'
    assert "I=7, J=5" in text[2] and text[3].split()[1] == "2"  # first row written: smallest y
    g = read_piv(path)
    np.testing.assert_allclose(g.x, f.x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.y, f.y, rtol=0, atol=1e-12)
    assert np.array_equal(g.mask, f.mask) and np.array_equal(g.u, f.u) and np.array_equal(g.v, f.v)
    assert g.units == ("mm", "m/s") and g.time == 0.25
    assert g.u[0, 1] == g.y[0] == 4.0 and g.u[-1, 1] == 2.0  # u = y: row 0 holds the largest y
    assert g.v[2, 0] == 6.0  # v = -2x at x = -3: signs untouched

    rng = np.random.default_rng(0)
    noisy = PIVField(f.x, f.y, rng.normal(size=f.shape), rng.normal(size=f.shape), f.mask, f.units)
    back = read_piv(write_tecplot(tmp_path / "noisy.dat", noisy))
    assert np.array_equal(back.u, noisy.u) and np.array_equal(back.v, noisy.v)  # float32 exactly


def test_tecplot_writer_leaves_old_file_when_it_fails(tmp_path, monkeypatch):
    path = write_tecplot(tmp_path / "a.dat", _field())
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", disk_full)  # fails after the new text went to the temporary file
    with pytest.raises(OSError, match="disk full"):
        write_tecplot(path, _field(time=9.0))
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["a.dat"]


def test_tecplot_of_other_writers(tmp_path):
    # TSI Insight style: one header line, units after the names, comma separated, CHC <= 0 invalid, y increasing
    rows = [f"{x:.6f}, {y:.6f}, {y * 10:.6f}, {-x:.6f}, {-1 if (x, y) == (1.0, 0.5) else 1}"
            for y in (0.0, 0.5, 1.0) for x in (0.0, 0.5, 1.0, 1.5)]
    (tmp_path / "run.vec").write_text('TITLE="C:\\a\\I=3.vec" VARIABLES="X mm", "Y mm", "U m/s", "V m/s", "CHC", '
                                      'DATASETAUXDATA Application="PIV" ZONE I=4, J=3, F=POINT\n' + "\n".join(rows))
    f = read_piv(tmp_path / "run.vec")
    assert pi.detect_format(tmp_path / "run.vec") == "tecplot"
    assert f.shape == (3, 4) and f.units == ("mm", "m/s") and f.time is None
    assert list(f.y) == [1.0, 0.5, 0.0] and list(f.u[:, 0]) == [10.0, 5.0, 0.0] and list(f.v[0]) == [0, -0.5, -1, -1.5]
    assert (~f.mask).sum() == 1 and not f.mask[1, 2]
    (tmp_path / "p.dat").write_text('VARIABLES = "x", "y", "p"\nZONE I=2, J=1\n0 0 1\n1 0 2\n')
    with pytest.raises(ValueError, match=r"no u/v column among \['x', 'y', 'p'\]") as e:
        read_piv(tmp_path / "p.dat")
    _one_line(e)
    (tmp_path / "block.dat").write_text('VARIABLES = "x", "y", "u", "v"\nZONE I=2, J=1, DATAPACKING=BLOCK\n0 1\n0 0\n')
    with pytest.raises(ValueError, match="BLOCK packing"):
        read_piv(tmp_path / "block.dat")


def test_openpiv_text_written_by_the_test(tmp_path):
    f = _field()
    xx, yy = np.meshgrid(f.x, f.y)
    u, v = f.u.astype(float).copy(), f.v.astype(float).copy()
    u[~f.mask] = np.nan
    flags = np.zeros(f.shape)
    flags[3, 3] = 1  # an outlier OpenPIV flagged
    order = np.random.default_rng(1).permutation(u.size)  # any row order
    table = np.column_stack([a.ravel()[order] for a in (xx, yy, u, v, flags, np.zeros(f.shape))])
    np.savetxt(tmp_path / "openpiv.txt", table, fmt="%.4e", delimiter="\t", header="x\ty\tu\tv\tflags\tmask")
    g = read_piv(tmp_path / "openpiv.txt")
    want = f.mask.copy()
    want[3, 3] = False
    assert np.array_equal(g.mask, want) and np.isfinite(g.u).all()
    np.testing.assert_allclose(g.u[want], f.u[want], rtol=1e-4)
    assert g.u[0, 0] == pytest.approx(4.0) and g.v[0, 0] == pytest.approx(6.0)  # row 0: largest y; v = -2x

    np.savetxt(tmp_path / "nohead.txt", np.column_stack([xx.ravel(), yy.ravel(), f.u.ravel(), f.v.ravel(),
                                                         (~f.mask).ravel()]), fmt="%.6f")
    h = read_piv(tmp_path / "nohead.txt")  # a 0/1 fifth column is OpenPIV's mask (1 = masked)
    assert np.array_equal(h.mask, f.mask) and np.array_equal(h.u[f.mask], f.u[f.mask])


def test_mat_files_written_with_scipy_and_h5py(tmp_path):
    f = _field()
    # PIVMat struct on a square grid: x (1, M), y (1, N) increasing ('Y axis upward'), vx(i, j) at (x(i), y(j));
    # invalid vectors are zeros
    sq = _field(h=6, w=6)
    pivmat = {"x": sq.x, "y": sq.y[::-1], "vx": sq.u[::-1].T.astype(float), "vy": sq.v[::-1].T.astype(float),
              "unitx": "mm", "unitvx": "m/s", "ysign": "Y axis upward"}
    scipy.io.savemat(tmp_path / "pivmat.mat", {"v": pivmat})
    g = read_piv(tmp_path / "pivmat.mat")
    assert g.units == ("mm", "m/s") and np.array_equal(g.y, sq.y)
    assert np.array_equal(g.mask, sq.mask) and np.array_equal(g.u, sq.u) and np.array_equal(g.v, sq.v)

    # PIVlab export (File > Save > MAT): meshgrids in image coordinates (y down the rows, v positive downwards)
    xx, yy = np.meshgrid(f.x, -f.y)
    tv = np.where(f.mask, 1.0, 0.0)
    tv[0, 0] = 2  # filtered (interpolated) vector: not a measurement
    export = {"x": _cell(xx), "y": _cell(yy), "u_original": _cell(f.u), "v_original": _cell(-f.v),
              "typevector_original": _cell(tv), "units": "[m] respectively [m/s]"}
    scipy.io.savemat(tmp_path / "pivlab.mat", export)
    p = read_piv(tmp_path / "pivlab.mat")
    want = f.mask.copy()
    want[0, 0] = False
    assert p.units == ("m", "m/s") and np.allclose(p.y, f.y) and np.array_equal(p.mask, want)
    assert np.array_equal(p.u[want], f.u[want]) and np.array_equal(p.v[want], f.v[want])

    # MATLAB v7.3: HDF5 behind a 512-byte header, arrays stored transposed, structs as groups, chars as uint16
    with h5py.File(tmp_path / "v73.mat", "w", userblock_size=512) as h:
        for name, value in (("x", xx), ("y", -yy), ("u", f.u), ("v", f.v)):
            h[name] = np.asarray(value, dtype=float).T
        group = h.create_group("pivmat")
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        for name in ("x", "y", "vx", "vy"):
            group[name] = np.atleast_2d(pivmat[name]).T
        for name in ("unitx", "unitvx"):
            group[name] = np.array([[ord(c)] for c in pivmat[name]], dtype=np.uint16)
            group[name].attrs["MATLAB_class"] = np.bytes_("char")
    with open(tmp_path / "v73.mat", "r+b") as out:
        out.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116))
    q = read_piv(tmp_path / "v73.mat")  # the PIVMat struct wins over plain variables
    assert q.units == ("mm", "m/s") and np.array_equal(q.u, sq.u) and np.array_equal(q.v, sq.v)
    with h5py.File(tmp_path / "v73.mat", "r+") as h:
        del h["pivmat"]
    q = read_piv(tmp_path / "v73.mat")  # plain meshgrid x, y, u, v taken literally
    assert np.array_equal(q.y, f.y) and np.array_equal(q.u, f.u) and np.array_equal(q.v, f.v) and q.mask.all()

    scipy.io.savemat(tmp_path / "other.mat", {"pressure": np.ones((3, 3))})
    with pytest.raises(ValueError, match=r"no PIV velocity found .*\['pressure'\]") as e:
        read_piv(tmp_path / "other.mat")
    _one_line(e)


# --------------------------------------------------------------------------------------------------- bad input

def test_series_needs_one_grid(tmp_path):
    write_tecplot(tmp_path / "a.dat", _field())
    write_tecplot(tmp_path / "b.dat", _field(time=1.0))
    s = read_piv_series(tmp_path)
    assert s.velocity.shape == (2, 2, 5, 7) and np.isnan(s.times[0]) and s.times[1] == 1.0
    assert np.array_equal(s.common_mask, _field().mask)
    write_tecplot(tmp_path / "c.dat", _field(x0=-2.5))
    with pytest.raises(ValueError, match=r"c\.dat: its 7x5 grid .* differs from a\.dat's") as e:
        read_piv_series(tmp_path)
    _one_line(e)
    write_tecplot(tmp_path / "c.dat", _field(h=6))
    with pytest.raises(ValueError, match="differs from"):
        read_piv_series([tmp_path / "c.dat", tmp_path / "a.dat"])
    (tmp_path / "notes.txt").write_text("1 2 3 4\n")
    with pytest.raises(ValueError, match=r"several kinds \(\.dat, \.txt\); pass fmt="):
        read_piv_series(tmp_path)
    with pytest.raises(ValueError, match=r"c\.dat: its 7x6 grid"):  # fmt= picks the .dat files only
        read_piv_series(tmp_path, fmt="tecplot")


def test_irregular_and_incomplete_grids_are_refused(tmp_path):
    rows = [f"{x} {y} 1 0" for y in (0, 1) for x in (0, 1, 2, 3.5)]
    (tmp_path / "irregular.txt").write_text("\n".join(rows))
    with pytest.raises(ValueError, match="irregular grid, x spacing varies from 1 to 1.5") as e:
        read_piv(tmp_path / "irregular.txt")
    _one_line(e)
    (tmp_path / "holes.txt").write_text("\n".join([f"{x} {y} 1 0" for y in (0, 1) for x in (0, 1, 2)][:-1]))
    with pytest.raises(ValueError, match=r"5 vectors do not fill the 3x2 grid once each \(1 missing"):
        read_piv(tmp_path / "holes.txt")
    with pytest.raises(ValueError, match="irregular grid, y spacing"):
        PIVField(np.arange(3.0), np.array([3.0, 2.0, 0.0]), np.zeros((3, 3)), np.zeros((3, 3)), np.ones((3, 3)))


def test_missing_unknown_and_missing_dependency(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nothere.vc7: no such PIV file") as e:
        read_piv(tmp_path / "nothere.vc7")
    _one_line(e)
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2" * 100)
    with pytest.raises(ValueError, match=r"unknown PIV format \(extension '\.bin'\); pass fmt=") as e:
        read_piv(tmp_path / "blob.bin")
    _one_line(e)
    (tmp_path / "notes.txt").write_text("hello\nworld\n")
    with pytest.raises(ValueError, match="unknown PIV format"):
        read_piv(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_piv_series(tmp_path / "nowhere")

    (tmp_path / "B00001.vc7").write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "lvpyio", None)  # as if not installed
    with pytest.raises(ImportError, match=r'needs lvpyio: pip install "lvpyio==1\.3\.0"') as e:
        read_piv(tmp_path / "B00001.vc7")
    _one_line(e)
