"""The similarity map: features, projection and neighbours on small arrays; the Map page paints labels through
the Labeler's domain function (history with source "map", audited, undoable) and refuses without permission."""

from __future__ import annotations

import numpy as np
import pytest
from pages_factory import database_copy, page_store, populate, template_database
from PIL import Image as PILImage
from sqlalchemy import select

from hydra_assets import similarity
from hydra_assets.db.models import AuditLog, Image, LabelHistory
from hydra_assets.similarity import PCA, TSNE, UMAP, FeatureCache, SimilarityError, build_map, nearest, project
from panel_app.pages.similarity import LABEL, NOVELTY, RUN, MapPage, colour_groups
from panel_app.views_data import UNLABELED, MapPoint


def blobs(seed: int = 0, per: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated clusters in 20 dimensions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 20)) * 10
    rows = np.concatenate([c + rng.normal(scale=0.3, size=(per, 20)) for c in centres]).astype(np.float32)
    return rows, np.repeat(np.arange(3), per)


# ---- domain ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [PCA, TSNE])
def test_projection_keeps_clusters_apart_and_is_deterministic(method):
    rows, cluster = blobs()
    xy = project(rows, method, seed=3)
    assert xy.shape == (30, 2) and xy.dtype == np.float32
    assert np.array_equal(xy, project(rows, method, seed=3))
    centres = np.array([xy[cluster == c].mean(axis=0) for c in range(3)])
    spread = max(float(np.linalg.norm(xy[cluster == c] - centres[c], axis=1).max()) for c in range(3))
    gaps = [float(np.linalg.norm(centres[a] - centres[b])) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 2 * spread  # every cluster stays a cluster on the map


def test_umap_projection_when_installed():
    pytest.importorskip("umap", reason="umap-learn not installed (PCA and t-SNE are tested)")
    rows, cluster = blobs(per=12)
    xy = project(rows, UMAP, seed=1)
    assert xy.shape == (36, 2)
    centres = np.array([xy[cluster == c].mean(axis=0) for c in range(3)])
    nearest_centre = np.argmin(np.linalg.norm(xy[:, None, :] - centres[None], axis=2), axis=1)
    assert (nearest_centre == cluster).all()


def test_projection_of_tiny_sets_and_unknown_method():
    assert project(np.zeros((0, 5)), PCA).shape == (0, 2)
    assert project(np.ones((1, 5)), TSNE).shape == (1, 2)
    assert project(np.arange(6, dtype=float).reshape(3, 2), UMAP).shape == (3, 2)  # too few: PCA
    with pytest.raises(SimilarityError, match="unknown projection"):
        project(np.zeros((4, 2)), "MDS")


def test_nearest_neighbours_are_the_same_cluster_without_itself():
    rows, cluster = blobs(per=8)
    found = nearest(rows, 5, 7)
    assert len(found) == 7 and 5 not in found
    assert all(cluster[i] == cluster[5] for i in found)
    assert nearest(rows[:1], 0, 3) == []
    assert len(nearest(rows[:3], 0, 10)) == 2


def test_pixel_features_are_small_grayscale_and_mark_unreadable_files(tmp_path):
    white, black = tmp_path / "white.png", tmp_path / "black.png"
    PILImage.new("RGB", (64, 48), "white").save(white)
    PILImage.new("RGB", (64, 48), "black").save(black)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows = similarity.pixel_features([white, black, tmp_path / "broken.png", tmp_path / "gone.png"])
    assert rows.shape == (4, similarity.PIXEL_SIZE[0] * similarity.PIXEL_SIZE[1])
    assert np.allclose(rows[0], 1.0) and np.allclose(rows[1], 0.0)
    assert np.isnan(rows[2]).all() and np.isnan(rows[3]).all()


def test_feature_cache_computes_only_new_images_and_retries_unreadable(tmp_path):
    calls: list[int] = []

    def compute(paths):  # type: ignore[no-untyped-def]
        calls.append(len(paths))
        return np.array([[np.nan, np.nan] if "bad" in str(p) else [float(len(str(p))), 1.0] for p in paths],
                        dtype=np.float32)

    cache = FeatureCache(tmp_path, 7, "hydra-X/3")
    first = cache.features([1, 2, 3], [tmp_path / "a", tmp_path / "bb", tmp_path / "bad"], compute)
    assert calls == [3] and np.isnan(first[2]).all() and not np.isnan(first[:2]).any()
    again = cache.features([1, 2, 3, 4], [tmp_path / "a", tmp_path / "bb", tmp_path / "bad", tmp_path / "dddd"],
                           compute)
    assert calls == [3, 2]  # only the unreadable one and the new one
    assert np.array_equal(again[:2], first[:2])
    assert cache.path.name == "7-hydra-X_3.npz"


def test_build_map_caches_the_projection_and_leaves_missing_files_off(tmp_path, monkeypatch):
    files = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        PILImage.new("L", (40, 30), 40 * i).save(path)
        files.append(path)
    built = build_map(folder=tmp_path / "cache", plot_type_id=1, image_ids=[10, 11, 12, 13, 14, 15, 16],
                      paths=[*files, None], method=PCA)
    assert built.image_ids == [10, 11, 12, 13, 14, 15] and built.xy.shape == (6, 2)
    assert "1 image(s) left off the map" in built.notes[0]
    assert built.more_like(10, 2) == [11, 12]  # the two closest grays
    monkeypatch.setattr(similarity, "project", lambda *a, **k: pytest.fail("projected again instead of cached"))
    again = build_map(folder=tmp_path / "cache", plot_type_id=1, image_ids=[10, 11, 12, 13, 14, 15, 16],
                      paths=[*files, None], method=PCA)
    assert np.array_equal(again.xy, built.xy)


def test_colour_groups_by_label_and_by_number():
    points = [MapPoint(1, 5, 1, label_id=3, novelty=0.1), MapPoint(2, 6, 1, novelty=None), MapPoint(3, 7, 1,
                                                                                                      novelty=0.9)]
    groups, colours = colour_groups(points, LABEL, {3: ("Bad", "#ff0000")})
    assert groups == ["Bad", UNLABELED, UNLABELED] and colours[0] == "#ff0000"
    groups, colours = colour_groups(points, NOVELTY, {})
    assert groups[1] == "no novelty" and colours[1] != colours[0] and colours[0] != colours[2]
    groups, _ = colour_groups(points, RUN, {})
    assert groups[0].startswith("run 5")


# ---- the page over a populated database ------------------------------------------------------------------

CDC = {"plot_type": "CDC_occupancy"}  # populate's plot type with a deep queue


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return template_database(tmp_path_factory.mktemp("map_page"), populate)


@pytest.fixture
def demo_db(template, tmp_path):
    settings, demo = template
    database, settings = database_copy(settings, tmp_path)
    settings = settings.model_copy(update={"home": tmp_path})  # the map's cache goes under this test's home
    yield database, settings, demo
    database.dispose()


def test_map_shows_a_plot_types_images_and_says_why_pixels(demo_db):
    db, settings, demo = demo_db
    page = MapPage(store=page_store(db, settings, "labeler"), args={})
    assert page.plot_type == next(iter(page.param.plot_type.names.values()))  # the first plot type
    page.plot_type = demo.plot_types["CDC_occupancy"]
    assert set(page.source.data["id"]) == set(demo.images["CDC_occupancy"])
    assert page.info.object.count(f"<b class=map-count>{len(demo.images['CDC_occupancy'])}</b>") == 1
    assert "the map uses image pixels" in page.info.object  # demo models have no file
    assert (tmp_path_cache := settings.home / "similarity").is_dir() and any(tmp_path_cache.glob("*.npz"))


def test_paint_stores_labels_with_history_and_audit_and_undo_puts_them_back(demo_db):
    db, settings, demo = demo_db
    page = MapPage(store=page_store(db, settings, "labeler"), args=CDC)
    bad = demo.labels["CDC_occupancy"]["Bad"]
    page.paint_label = bad
    chosen = page.select(demo.queue["CDC_occupancy"][:5])
    assert len(chosen) == 5
    assert page.paint() == 5
    assert "Painted 5 image(s) as Bad" in page.feedback.object
    with db.read() as s:
        assert set(s.scalars(select(Image.label_id).where(Image.id.in_(chosen)))) == {bad}
        history = s.scalars(select(LabelHistory).where(LabelHistory.image_id.in_(chosen))).all()
        assert {h.source for h in history} == {"map"} and len(history) == 5
        assert s.scalar(select(AuditLog.id).where(AuditLog.action == "apply labels"))
    assert page.undo() == 5
    with db.read() as s:
        assert set(s.scalars(select(Image.label_id).where(Image.id.in_(chosen)))) == {None}
    assert page.undo() is None and "Nothing to undo" in page.feedback.object


def test_paint_is_refused_without_the_label_permission(demo_db):
    db, settings, demo = demo_db
    page = MapPage(store=page_store(db, settings, "viewer"), args=CDC)
    assert "may not label" in page.info.object
    chosen = page.select(demo.queue["CDC_occupancy"][:3])
    assert page.paint() is None and "Refused, nothing stored" in page.feedback.object
    with db.read() as s:
        assert set(s.scalars(select(Image.label_id).where(Image.id.in_(chosen)))) == {None}
        assert not s.scalars(select(LabelHistory).where(LabelHistory.source == "map")).all()


def test_more_like_this_from_the_url_selects_the_neighbours(demo_db):
    db, settings, demo = demo_db
    image = demo.images["CDC_occupancy"][3]
    page = MapPage(store=page_store(db, settings, "labeler"), args={"plot_type": "CDC_occupancy", "image": str(image)})
    assert page.similar[0] == image and len(page.similar) == 1 + page.neighbours
    assert page.selected == page.similar
    assert page.source.selected.indices and "More like this" in page.tiles.object
    bad_url = MapPage(store=page_store(db, settings, "labeler"), args={"plot_type": "nope"})
    assert "No plot type named" in bad_url.feedback.object


def test_a_plot_type_with_a_loadable_model_is_mapped_by_its_embedding(demo_db, tmp_path):
    from hydra_assets.ml.active import register_local_model
    from hydra_assets.ml.topologies import build_model

    db, settings, demo = demo_db
    model = build_model("compact", (32, 32, 3), 3)
    model.save(tmp_path / "tiny.keras")
    register_local_model(db, "CDC_occupancy", tmp_path / "tiny.keras", ["Good", "Bad", "NoData"])
    page = MapPage(store=page_store(db, settings, "labeler"), args=CDC)
    assert "local-CDC_occupancy/1" in page.info.object and "embedding" in page.info.object
    assert page.map is not None and page.map.source == "local-CDC_occupancy/1"
    width = int(model.get_layer("logits").input.shape[-1])
    assert page.map.features.shape == (len(demo.images["CDC_occupancy"]), width)  # not the 768 pixels
    assert (settings.home / "similarity" / f"{demo.plot_types['CDC_occupancy']}-local-CDC_occupancy_1.npz").is_file()
