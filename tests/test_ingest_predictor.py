"""The warm predictor service: started on demand, same answers as in-process, errors carried across."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import numpy as np
import pytest
from test_ingest_support import (  # noqa: F401 - fixtures
    PLOT,
    activate,
    drop,
    home,
    metadata,
    model_files,
    png_bytes,
    run_request,
    tick,
)

from hydra_assets.ingest.classifier import InProcessClassifier, InputSizeMismatch
from hydra_assets.ingest.model_inputs import prepare
from hydra_assets.ingest.predictor import ServiceClassifier, ensure_service

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("home")]


@pytest.fixture
def service(home, sqlite_db, model_files):
    """A running service for this home (with the 'bad' model active), stopped by its pid afterwards."""
    activate(sqlite_db, model_files["bad"])
    client = ensure_service(home, wait_s=180)
    assert client is not None, (home.home / "run" / "predictor.log").read_text()
    pid = client.ping()["pid"]
    yield client
    os.kill(pid, signal.SIGTERM)


def batch(home, n=3):
    paths = []
    for i in range(n):
        path = home.images_dir / f"x{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(i))
        paths.append(path)
    return np.stack([prepare(p, (32, 32)) for p in paths])


def test_service_answers_like_in_process(home, sqlite_db, service, tmp_path):
    images = batch(home)
    paths = [str(tmp_path / f"cam{i}.png") for i in range(3)]
    remote = service.classify(PLOT, images, paths)
    local = InProcessClassifier(sqlite_db, home).classify(PLOT, images, [None] * 3)
    assert remote.where.startswith("service pid") and local.where.startswith("in-process")
    assert remote.model_key == local.model_key and remote.label_names == ["Good", "Bad"]
    np.testing.assert_allclose(remote.weights, local.weights, atol=1e-6)
    assert sorted(remote.gradcams) == [0, 1, 2] and all(os.path.isfile(p) for p in remote.gradcams.values())
    with pytest.raises(InputSizeMismatch) as mismatch:
        service.classify(PLOT, np.zeros((1, 16, 16, 3), np.uint8), [None])
    assert mismatch.value.size == (32, 32)


def test_service_passes_novelty_through(home, sqlite_db, service):
    """The reply carries each image's novelty score and the version's limit, as in-process."""
    from sqlalchemy import select

    from hydra_assets.db.models import Model
    from hydra_assets.ml.active import load_keras_file, model_file, novelty_path
    from hydra_assets.ml.embedding import embed
    from hydra_assets.scores import novelty

    images = batch(home, 4)
    with sqlite_db.read() as s:
        row = s.scalar(select(Model).where(Model.active.is_(True)))
        features, _ = embed(load_keras_file(model_file(home, row), what="test"), images[:3] / np.float32(255))
        novelty.save(novelty.calibrate(features, neighbours=2), novelty_path(home, row))
    remote = service.classify(PLOT, images, [None] * 4)
    local = InProcessClassifier(sqlite_db, home).classify(PLOT, images, [None] * 4)
    assert remote.novelty is not None and remote.novelty.shape == (4,)
    np.testing.assert_allclose(remote.novelty, local.novelty, atol=1e-5)
    assert remote.novelty_limit == pytest.approx(local.novelty_limit) and remote.novelty_limit > 0


def test_service_reports_model_load_errors(home, sqlite_db, service, model_files):
    from hydra_assets.ml.active import ModelLoadError, register_local_model

    register_local_model(sqlite_db, PLOT, model_files["corrupt"], ["Good", "Bad"], input_size=(32, 32))
    with pytest.raises(ModelLoadError, match="corrupt.keras"):
        service.classify(PLOT, batch(home, 1), [None])


def test_second_service_for_the_same_home_exits(home, service):
    started = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "hydra_assets.ingest.predictor", "--home", str(home.home),
                             "--db-url", home.db_url, "--no-warm"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "already running" in second.stderr
    assert time.monotonic() - started < 60
    assert service.ping()["pid"]


def test_chunk_job_uses_the_warm_service(home, service):
    instance = dg.DagsterInstance.ephemeral()
    drop(home.input_dir, f"{PLOT}-40-0001.png", png_bytes(1))
    (request,) = tick(instance, mode="service").run_requests
    run = run_request(instance, request, mode="service")
    assert str(metadata(run, "inference")["where"]).startswith("service pid")
    assert metadata(run, "inference")["gradcams"] == 1


def test_unreachable_service_is_none_without_spawning(home):
    assert ensure_service(home, wait_s=0.5, spawn=False) is None
    with pytest.raises(Exception, match="not reachable"):
        ServiceClassifier(home).ping()


def test_a_service_for_another_home_does_not_stop_this_home_getting_one(tmp_path, monkeypatch):
    """Regression: services started in this process were tracked without their home, so a service left
    running for one home kept any other home from ever getting its own."""
    from hydra_assets.ingest import predictor
    from hydra_assets.settings import load_settings

    started: list[str] = []

    class Running:
        def poll(self):
            return None

    def fake_start(config, **_):  # type: ignore[no-untyped-def]
        started.append(str(config.home))
        return Running()

    monkeypatch.setattr(predictor, "_spawned", {})
    monkeypatch.setattr(predictor, "start_service", fake_start)
    first, second = load_settings(home=tmp_path / "a"), load_settings(home=tmp_path / "b")
    for config in (first, second, first):
        config.ensure_folders()
        assert predictor.ensure_service(config, wait_s=0.0) is None  # nothing real answers
    assert started == [str(first.home), str(second.home)]  # one each; the live one for `a` is reused


def test_service_reports_a_database_outage_as_such(home, monkeypatch):
    """A database restart seen by the service reaches the run as DatabaseUnavailable, so its step waits for
    the database instead of failing the chunk (or falling back to a slow in-process load)."""
    from sqlalchemy.exc import OperationalError

    from hydra_assets.db.engine import DatabaseUnavailable
    from hydra_assets.ingest.predictor import _Server

    server = _Server(home, idle_s=60)

    def refused(*_args, **_kwargs):
        raise OperationalError("SELECT …", {}, Exception(2003, "Can't connect to MySQL server on '127.0.0.1'"))

    monkeypatch.setattr(server.classifier, "classify", refused)
    reply = server.handle({"op": "classify", "plot_type": PLOT, "images": np.zeros((1, 32, 32, 3), np.uint8),
                           "gradcam_paths": [None]})
    assert reply["error"] == "DatabaseUnavailable" and "2003" in reply["message"]

    client = ServiceClassifier(home)
    monkeypatch.setattr(client, "_call", lambda _request: reply)
    with pytest.raises(DatabaseUnavailable, match="Can't connect"):
        client.classify(PLOT, np.zeros((1, 32, 32, 3), np.uint8), [None])


def test_warm_up_survives_an_unreachable_database(home):
    """A service started while the database restarts still serves (models load on first use)."""
    from hydra_assets.ingest.predictor import _Server

    server = _Server(home.model_copy(update={"db_url": "mysql+pymysql://root@127.0.0.1:9/none"}), idle_s=60)
    assert server.warm_up() == []


def test_a_service_that_crashes_while_starting_is_started_again(home, monkeypatch):
    """Bounded: three more starts, then the caller gets None (and classifies in-process, or fails)."""
    from hydra_assets.ingest import predictor

    started = []

    def crashing(_config, **_kwargs):
        started.append(time.monotonic())
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    monkeypatch.setattr(predictor, "start_service", crashing)
    monkeypatch.setattr(predictor, "_spawned", {})
    assert ensure_service(home, wait_s=8) is None
    assert len(started) == 4
