"""Fault 2b — the run worker is SIGKILLed mid-chunk under the real `dagster-daemon run`, and nobody helps.

test_fault_run_worker.py kills a worker and then re-executes the run itself.  Here the daemon, with the
repository's dagster.yaml (run retries + run monitoring on), must do everything: run monitoring notices
the dead worker and marks its run failed, the auto-retry daemon launches a retry (tags
`dagster/parent_run_id`, `dagster/retry_number`), and the retry completes the chunk — one image row, one
inference and one keep decision per file, nothing left in the incoming folder.

Mid-chunk, realistically: with the in-process predictor every run worker imports TensorFlow and loads the
model before its first inference (3.7 s measured, see dagster.yaml), so the worker is killed once the
Feeder has committed the chunk's images and before any inference is written.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from dagster import DagsterInstance
from dagster._core.storage.dagster_run import DagsterRunStatus
from fault_support import REPO, Daemon, counts, dagster_home, drop_many, runs_by_status, wait_until
from test_ingest_support import activate, home, model_files  # noqa: F401

from hydra_assets.warm_launcher import PID_TAG

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("home")]
FILES = 40
POLL_S = int(os.environ.get("HYDRA_FAULT_POLL_S", "5"))  # run monitoring's poll interval here (dagster.yaml: 30 s)


def retry_yaml(folder) -> "os.PathLike[str]":
    """The repository's dagster.yaml, except that run monitoring looks every POLL_S s instead of 30 s, so
    the test does not wait up to 30 s for the dead worker to be noticed.  Everything else is unchanged."""
    text = (REPO / "dagster.yaml").read_text()
    assert "poll_interval_seconds: 30" in text and "max_retries: 2" in text
    path = folder / "dagster.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("poll_interval_seconds: 30", f"poll_interval_seconds: {POLL_S}"))
    return path


def test_daemon_retries_a_run_whose_worker_was_killed_mid_chunk(home, sqlite_db, model_files, tmp_path,
                                                                monkeypatch):
    activate(sqlite_db, model_files["bad"])  # every image confirmed Bad: kept, alarmed, GradCAM
    dhome = dagster_home(tmp_path / "dagster", yaml=retry_yaml(tmp_path / "yaml"))
    monkeypatch.setenv("DAGSTER_HOME", str(dhome))
    names = drop_many(home.input_dir, FILES, runs=1)  # one run number: one chunk, one run

    daemon = Daemon(dhome, tmp_path / "daemon.log").start()
    alive = lambda: daemon.process.poll() is None  # noqa: E731
    try:
        with DagsterInstance.from_config(str(dhome)) as instance:
            def mid_chunk() -> bool:  # the Feeder committed, Predict has not written anything yet
                runs = instance.get_runs()
                if not runs or PID_TAG not in runs[0].tags:
                    return False
                c = counts(sqlite_db, home.input_dir)
                assert c.inferences == 0, f"the chunk got past Predict before the worker could be killed: {c}"
                return c.registered == FILES

            wait_until(mid_chunk, timeout=90, every=0.2, alive=alive)
            (victim,) = instance.get_runs()
            os.kill(int(victim.tags[PID_TAG]), signal.SIGKILL)
            killed_at = time.time()
            at_kill = counts(sqlite_db, home.input_dir)
            assert victim.status == DagsterRunStatus.STARTED

            # From here on the test only watches.
            def retried_and_done() -> bool:
                failed = instance.get_run_by_id(victim.run_id)
                retries = [r for r in instance.get_runs() if r.tags.get("dagster/parent_run_id") == victim.run_id]
                c = counts(sqlite_db, home.input_dir)
                return (failed.status == DagsterRunStatus.FAILURE and any(r.is_finished for r in retries)
                        and c.files_left == 0 and c.keep_decisions >= FILES)

            wait_until(retried_and_done, timeout=120, every=1.0, alive=alive)
            recovery_s = time.time() - killed_at
            failed = instance.get_run_record_by_id(victim.run_id)
            (retry,) = [instance.get_run_record_by_id(r.run_id) for r in instance.get_runs()
                        if r.tags.get("dagster/parent_run_id") == victim.run_id]
    except (TimeoutError, RuntimeError) as error:
        raise AssertionError(f"{error}: {counts(sqlite_db, home.input_dir)} runs={runs_by_status(dhome)}\n"
                             f"{daemon.tail()}") from error
    finally:
        daemon.stop()

    c = counts(sqlite_db, home.input_dir)
    marked_failed_s = failed.end_time - killed_at
    retry_launched_s = retry.create_timestamp.timestamp() - killed_at
    print(f"\nkilled worker of run {victim.run_id[:8]} mid-chunk ({at_kill.registered} images, "
          f"{at_kill.inferences} inferences): marked failed after {marked_failed_s:.1f} s, retry "
          f"{retry.dagster_run.run_id[:8]} (retry_number={retry.dagster_run.tags.get('dagster/retry_number')}) "
          f"created after {retry_launched_s:.1f} s, {retry.dagster_run.status.value} — recovery {recovery_s:.1f} s; "
          f"files_in={FILES} {c.as_dict()} duplicates={c.duplicates} runs={runs_by_status(dhome)}")

    assert failed.dagster_run.status == DagsterRunStatus.FAILURE
    assert retry.dagster_run.status == DagsterRunStatus.SUCCESS
    assert retry.dagster_run.tags.get("dagster/retry_number") == "1"
    assert runs_by_status(dhome) == {"FAILURE": 1, "SUCCESS": 1}
    assert c.duplicates == 0 and c.files_left == 0 and c.quarantined == 0
    assert c.registered == c.distinct_files == FILES
    assert c.inferences == c.images_with_inference == FILES
    assert c.keep_decisions == c.inferences_with_decision == FILES
    with sqlite_db.read() as s:
        from sqlalchemy import select

        from hydra_assets.db.models import Image
        assert set(s.scalars(select(Image.file_name))) == set(names)
