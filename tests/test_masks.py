"""Masks: rectangles checked and applied (pure), versions per plot type (SQLite and MariaDB), the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from hydra_assets import catalog
from hydra_assets.db.models import PlotType
from hydra_assets.mask_versions import current_mask, current_regions, mask_history, set_mask
from hydra_assets.masks import MaskError, apply_mask, mask_array, parse_region, region_text, validate_regions

# ---- pure: checking rectangles ---------------------------------------------------------------------------

def test_valid_regions_become_float_tuples():
    assert validate_regions([[0, 0, 0.5, 1], ("0.25", 0.1, 0.75, 0.2)]) == [
        (0.0, 0.0, 0.5, 1.0), (0.25, 0.1, 0.75, 0.2)]
    assert validate_regions([]) == [] and validate_regions(None) == []


@pytest.mark.parametrize(("regions", "message"), [
    ([[0.5, 0, 0.2, 1]], "reversed corners \\(x0 > x1\\)"),
    ([[0, 0.9, 1, 0.1]], "reversed corners \\(y0 > y1\\)"),
    ([[0, 0, 1.2, 0.5]], "outside the image: x1 must be between 0 and 1"),
    ([[-0.1, 0, 0.5, 0.5]], "outside the image: x0"),
    ([[0.3, 0, 0.3, 1]], "is empty"),
    ([[0, 0, 1, 1]], "covers all of the image"),
    ([[0, 0, 0.5, 1], [0.5, 0, 1, 0.6], [0.4, 0.5, 1, 1]], "covers all of the image"),
    ([[0, 0, 1]], "four numbers"),
    (["0,0,1,1"], "four numbers"),
    ([["a", 0, 1, 1]], "must be numbers"),
    ([[0, 0, float("nan"), 1]], "finite"),
    ([[0, 0, 0.5, 0.5], [0.2, 0.2, 0.1, 0.3]], "rectangle 2"),
])
def test_bad_regions_are_refused_with_the_reason(regions, message):
    with pytest.raises(MaskError, match=message):
        validate_regions(regions)


def test_nearly_full_cover_is_allowed():
    # Three quarters covered, a gap in the bottom-right corner: still something to look at.
    assert len(validate_regions([[0, 0, 1, 0.5], [0, 0.5, 0.5, 1]])) == 2


def test_parse_region_as_typed():
    assert parse_region(" 0.1, 0, 0.2 ,1") == (0.1, 0.0, 0.2, 1.0)
    assert region_text((0.1, 0.0, 0.2, 1.0)) == "0.1,0,0.2,1"
    for text, message in [("0.1,0,0.2", "four numbers"), ("a,b,c,d", "must be numbers"), ("0.2,0,0.1,1", "reversed"),
                          ("0,0,,1", "four numbers")]:
        with pytest.raises(MaskError, match=message):
            parse_region(text)


# ---- pure: applying them ---------------------------------------------------------------------------------

def test_mask_array_marks_every_pixel_a_rectangle_overlaps():
    ignored = mask_array(4, 8, [[0, 0, 0.5, 0.25]])
    assert ignored.dtype == bool and ignored.shape == (4, 8)
    assert ignored[0, :4].all() and not ignored[0, 4:].any() and not ignored[1:].any()
    # 0.3 * 10 is 3.0000000000000004: an edge on a pixel edge stays there (columns 1..2, not 1..3)
    assert np.flatnonzero(mask_array(2, 10, [[0.1, 0, 0.3, 1]])[0]).tolist() == [1, 2]
    # a part of a pixel is enough; a thin rectangle still ignores one pixel
    assert np.flatnonzero(mask_array(1, 10, [[0.15, 0, 0.16, 1]])[0]).tolist() == [1]


def test_mask_covering_every_pixel_of_a_small_image_is_refused():
    with pytest.raises(MaskError, match="covers every pixel"):
        mask_array(2, 2, [[0, 0, 1, 0.6], [0, 0.6, 0.6, 1]])


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 3), (2, 8, 8, 3)])
def test_apply_mask_sets_ignored_pixels_and_keeps_the_rest(shape):
    image = np.random.default_rng(0).uniform(0.1, 1.0, size=shape).astype(np.float32)
    out = apply_mask(image, [[0.5, 0.5, 1, 1]], fill=0.0)
    assert out.dtype == image.dtype and out.shape == image.shape
    view = out if len(shape) < 4 else out[1]
    source = image if len(shape) < 4 else image[1]
    assert (view[4:, 4:] == 0).all()
    np.testing.assert_array_equal(view[:4], source[:4])
    np.testing.assert_array_equal(view[4:, :4], source[4:, :4])
    assert image.min() > 0  # the input itself is untouched


def test_apply_mask_without_regions_is_the_same_array():
    image = np.ones((4, 4, 3), dtype=np.uint8)
    assert apply_mask(image, []) is image
    assert apply_mask(image, [[0, 0, 0.5, 0.5]], fill=128)[0, 0, 0] == 128
    with pytest.raises(MaskError, match="shape"):
        apply_mask(np.ones(4), [[0, 0, 0.5, 0.5]])


# ---- database: versions per plot type --------------------------------------------------------------------

def _plot_type(db, name="BCAL_eta_phi"):
    return db.write(lambda s: catalog.add_plot_type(s, name, "Good,Bad", "Bad").id)


def test_every_change_is_a_new_version_and_clear_is_one_too(db):
    plot_id = _plot_type(db)
    other_id = _plot_type(db, "FCAL_occupancy")
    with db.read() as s:
        assert current_mask(s, plot_id) is None and current_regions(s, plot_id) == []

    def set_(regions, by, comment):
        return db.write(lambda s: set_mask(s, s.get(PlotType, plot_id), regions, by, comment).version)

    assert set_([[0, 0, 0.1, 1]], "alice", "dead channel 0") == 1
    assert set_([[0, 0, 0.1, 1], [0, 0, 1, 0.1]], "bob", "and the title") == 2
    assert set_([], "alice", "channel repaired") == 3
    db.write(lambda s: set_mask(s, s.get(PlotType, other_id), [[0.5, 0.5, 1, 1]], "carol", ""))
    with db.read() as s:
        mask = current_mask(s, plot_id)
        assert (mask.version, mask.regions, mask.created_by, mask.comment) == (3, [], "alice", "channel repaired")
        history = mask_history(s, plot_id)
        assert [(m.version, m.created_by, len(m.regions)) for m in history] == [
            (3, "alice", 0), (2, "bob", 2), (1, "alice", 1)]
        assert history[1].regions == [[0.0, 0.0, 0.1, 1.0], [0.0, 0.0, 1.0, 0.1]]
        assert current_regions(s, other_id) == [(0.5, 0.5, 1.0, 1.0)]
        assert current_mask(s, other_id).version == 1


def test_a_bad_mask_writes_nothing(db):
    plot_id = _plot_type(db)
    with pytest.raises(MaskError, match="covers all"):
        db.write(lambda s: set_mask(s, s.get(PlotType, plot_id), [[0, 0, 1, 1]], "alice", ""))
    with db.read() as s:
        assert mask_history(s, plot_id) == []


def test_save_mask_needs_edit_reference_or_edit_thresholds(sqlite_db):
    from sqlalchemy import select

    from hydra_assets.catalog import PermissionDenied
    from hydra_assets.db.models import AuditLog
    from hydra_assets.mask_versions import save_mask

    _plot_type(sqlite_db)
    sqlite_db.write(lambda s: catalog.ensure_roles(s))
    for name, role in (("vera", "viewer"), ("lena", "labeler"), ("eric", "expert")):
        sqlite_db.write(lambda s, n=name, r=role: catalog.add_user(s, n, role=r))
    with pytest.raises(PermissionDenied, match="needs 'edit_reference' or 'edit_thresholds'"):
        save_mask(sqlite_db, "BCAL_eta_phi", [[0, 0, 0.1, 1]], "vera", "")
    sqlite_db.write(lambda s: catalog.grant(s, "lena", "edit_thresholds", plot_type="BCAL_eta_phi"))
    assert save_mask(sqlite_db, "BCAL_eta_phi", [[0, 0, 0.1, 1]], "lena", "dead channel").version == 1
    assert save_mask(sqlite_db, "BCAL_eta_phi", [], "eric", "repaired").version == 2
    with pytest.raises(MaskError):
        save_mask(sqlite_db, "BCAL_eta_phi", [[0, 0, 2, 1]], "eric", "")
    with sqlite_db.read() as s:
        assert [m.version for m in mask_history(s, s.scalar(select(PlotType.id)))] == [2, 1]
        audit = [(a.user_name, a.allowed) for a in s.scalars(select(AuditLog).where(AuditLog.action.like("set mask%"))
                                                            .order_by(AuditLog.id))]
    assert audit == [("vera", False), ("lena", True), ("eric", True)]


# ---- the command line ------------------------------------------------------------------------------------

def _run(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from hydra_assets.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_cli_set_show_clear(hydra_home):
    import json

    _run("init")
    _run("plot-type", "add", "FDC_occupancy", "--labels", "Good,Bad", "--bad", "Bad")
    assert "has no mask" in _run("mask", "show", "FDC_occupancy").output
    out = _run("mask", "set", "FDC_occupancy", "--region", "0,0,1,0.1", "--region", "0.5,0.2,0.55,1",
               "--comment", "title and dead channel 48").output
    assert "mask version 1 of FDC_occupancy: 0,0,1,0.1; 0.5,0.2,0.55,1" in out
    assert "models trained from now on" in out
    assert "mask version 2 of FDC_occupancy: no rectangles (cleared)" in _run("mask", "clear", "FDC_occupancy").output
    shown = _run("mask", "show", "FDC_occupancy").output.splitlines()
    assert shown[0].startswith("* v2") and "cleared" in shown[0]
    assert "0,0,1,0.1; 0.5,0.2,0.55,1" in shown[1] and "# title and dead channel 48" in shown[1]
    rows = json.loads(_run("mask", "show", "FDC_occupancy", "--format", "json").output)
    assert [r["version"] for r in rows] == [2, 1] and rows[1]["regions"][1] == [0.5, 0.2, 0.55, 1.0]


@pytest.mark.parametrize(("region", "message"), [
    ("0.5,0,0.2,1", "reversed corners"),
    ("0,0,1.5,1", "outside the image"),
    ("0,0,1,1", "covers all of the image"),
    ("0,0,1", "four numbers"),
])
def test_cli_bad_rectangle_is_refused_and_nothing_written(hydra_home, region, message):
    _run("init")
    _run("plot-type", "add", "FDC_occupancy", "--labels", "Good,Bad", "--bad", "Bad")
    result = _run("mask", "set", "FDC_occupancy", "--region", region, code=2)
    assert message in result.output
    assert "has no mask" in _run("mask", "show", "FDC_occupancy").output


def test_cli_refuses_a_user_without_permission(hydra_home):
    _run("init")
    _run("plot-type", "add", "FDC_occupancy", "--labels", "Good,Bad", "--bad", "Bad")
    _run("user", "add", "vera", "--role", "viewer")
    result = _run("mask", "set", "FDC_occupancy", "--region", "0,0,0.1,1", "--user", "vera", code=3)
    assert "needs 'edit_reference' or 'edit_thresholds'" in result.output
    assert "unknown plot type" in _run("mask", "show", "NOPE", code=2).output


# ---- the Library's Mask tab (logic; the browser test is tests/ui/test_masks_ui.py) -------------------------

def test_library_list_parsing_and_drawn_boxes():
    from panel_app.pages.library_masks import drawn_regions, parse_rectangles, regions_text, source_data

    assert parse_rectangles("0, 0, 1, 0.1\n\n 0.48,0.2,0.52,1 ") == ([(0, 0, 1, 0.1), (0.48, 0.2, 0.52, 1)], "")
    assert parse_rectangles("") == ([], "")
    regions, why = parse_rectangles("0,0,1,0.1\n0.5,0,0.2,1")
    assert regions == [] and why.startswith("Line 2:") and "reversed corners" in why and "Nothing was saved" in why
    assert "covers all of the image" in parse_rectangles("0,0,1,0.5\n0,0.5,1,1")[1]
    # a box drawn past the edge is clipped to the image; a flat one is dropped; round trip through the glyph
    drawn = {"x": [0.95, 0.5, 0.25], "y": [0.5, 0.5, 0.25], "width": [0.2, 0.0, 0.1], "height": [0.2, 0.1, -0.1]}
    assert drawn_regions(drawn) == [(0.85, 0.4, 1.0, 0.6), (0.2, 0.2, 0.3, 0.3)]
    regions = [(0.1, 0.0, 0.2, 1.0), (0.0, 0.0, 1.0, 0.1)]
    assert drawn_regions(source_data(regions)) == regions
    assert regions_text(regions) == "0.1,0,0.2,1\n0,0,1,0.1"
