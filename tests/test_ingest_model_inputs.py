"""The Feeder -> Predict hand-off of model inputs (hydra_assets.ingest.model_inputs), on any executor."""

from __future__ import annotations

import hashlib

import pytest
from test_ingest_support import (  # noqa: F401 - fixtures
    PLOT,
    activate,
    count,
    drop,
    home,
    ingest_all,
    instance,
    model_files,
    png_bytes,
)

from hydra_assets.db.models import Inference
from hydra_assets.ingest.feeder import feed_files
from hydra_assets.ingest.scan import FileRef

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("home")]


def _feed_three(home, sqlite_db, run: int = 7) -> list:
    refs = []
    for chunk in (1, 2, 3):
        data = png_bytes(chunk, size=(40, 24))
        refs.append(FileRef(hashlib.sha256(data).hexdigest(), f"{PLOT}-{run}-{chunk:04d}.png"))
        drop(home.input_dir, refs[-1].name, data)
    return feed_files(sqlite_db, home, run, refs, dagster_run_id="run-a").registered


def test_feeder_hands_predict_the_pixels_it_decoded_while_checking(home, sqlite_db):
    """Decoded once: the arrays kept for Predict are exactly what reading the stored file gives."""
    import numpy as np

    from hydra_assets.ingest.feeder import input_sizes
    from hydra_assets.ingest.model_inputs import inputs_dir, prepare, take_inputs

    fed = _feed_three(home, sqlite_db)
    with sqlite_db.read() as s:
        size = input_sizes(s)[fed[0].plot_type_id]
    stashed = take_inputs(home, [i.digest for i in fed], size)
    assert sorted(stashed) == sorted(i.digest for i in fed)
    for image in fed:
        assert stashed[image.digest].shape == (*size, 3)
        assert np.array_equal(stashed[image.digest], prepare(image.stored, size))
    assert not list(inputs_dir(home).iterdir())  # taken: removed on the way


def test_the_kept_inputs_reach_predict_in_another_process(home, sqlite_db):
    """Not process memory: a step run by the multiprocess or Celery executor finds them too."""
    import json
    import subprocess
    import sys

    from hydra_assets.ingest.feeder import input_sizes

    fed = _feed_three(home, sqlite_db)
    with sqlite_db.read() as s:
        size = input_sizes(s)[fed[0].plot_type_id]
    code = ("import json, sys; from hydra_assets.settings import load_settings; "
            "from hydra_assets.ingest.model_inputs import take_inputs; "
            "found = take_inputs(load_settings(), json.loads(sys.argv[1]), tuple(json.loads(sys.argv[2]))); "
            "print(json.dumps({d: list(a.shape) for d, a in found.items()}))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps([i.digest for i in fed]), json.dumps(size)],
                         capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == {i.digest: [*size, 3] for i in fed}


def test_predict_uses_the_kept_inputs_and_leaves_none_behind(home, instance, sqlite_db, model_files):
    """A chunk run takes what its Feeder kept, and the entries of a plot type without a model go too."""
    from hydra_assets.ingest.model_inputs import inputs_dir

    for chunk in (1, 2):
        drop(home.input_dir, f"{PLOT}-8-{chunk:04d}.png", png_bytes(chunk))
    result, (run,) = ingest_all(instance)  # no model yet: nothing takes the inputs, Predict discards them
    assert run.success and count(sqlite_db, Inference, Inference.status == "no_model") == 2
    assert not list(inputs_dir(home).iterdir())
    activate(sqlite_db, model_files["good"])
    for chunk in (3, 4):
        drop(home.input_dir, f"{PLOT}-8-{chunk:04d}.png", png_bytes(chunk))
    _result, (run,) = ingest_all(instance, result.cursor)
    assert run.success and count(sqlite_db, Inference, Inference.status == "classified") == 2
    assert not list(inputs_dir(home).iterdir())


def test_a_damaged_or_stale_kept_input_is_not_used(home, sqlite_db):
    import os
    import time

    import numpy as np

    from hydra_assets.ingest.model_inputs import inputs_dir, keep_inputs, prune, take_inputs

    folder = inputs_dir(home)
    folder.mkdir(parents=True)
    (folder / "aaaa-32x32.rgb").write_bytes(np.zeros((5, 5, 3), np.uint8).tobytes())  # not the size it says
    assert take_inputs(home, ["aaaa", "cccc"], (32, 32)) == {}
    assert not (folder / "aaaa-32x32.rgb").exists()
    assert keep_inputs(home, {"dddd": np.full((32, 32, 3), 7, np.uint8)}) == 1
    assert [p.name for p in folder.iterdir()] == ["dddd-32x32.rgb"]  # no partial file left
    old = time.time() - 7200
    os.utime(folder / "dddd-32x32.rgb", (old, old))  # its Predict never came
    assert prune(folder) >= 1 and not (folder / "dddd-32x32.rgb").exists()
    keep_inputs(home, {"eeee": np.full((32, 32, 3), 7, np.uint8)})
    (kept,) = take_inputs(home, ["eeee"], (32, 32)).values()
    assert kept.shape == (32, 32, 3) and kept.dtype == np.uint8 and int(kept.sum()) == 7 * 32 * 32 * 3
