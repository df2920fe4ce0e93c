"""Fault 4 — disk full on the kept and the quarantine folder (each a tiny tmpfs, filled up).

Kept folder full: the Keeper step fails with a clear "No space left on device" error naming the folder;
no keep decision is recorded for an image whose copy was not stored, no partial file is left; when space
returns, the retried run completes every decision.  Quarantine folder full: good files keep flowing; a bad
file waits in the incoming folder (not lost, not recorded as quarantined) and is quarantined once space returns.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import pytest
from fault_support import counts
from sqlalchemy import func, select
from test_ingest_support import PLOT, activate, drop, home, model_files, png_bytes, run_request, tick  # noqa: F401

from hydra_assets.db.models import Image, KeepDecision
from hydra_assets.settings import load_settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("home")]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs; yields (mount point, fill(), free())."""
    mount = Path("/tmp") / f"hydra-full-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    filler = mount / "filler"

    def fill() -> None:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            while True:
                os.write(fd, b"\0" * 1024)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        finally:
            os.close(fd)

    def free() -> None:
        filler.unlink(missing_ok=True)

    try:
        yield mount, fill, free
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def test_kept_folder_full_fails_clearly_records_nothing_unstored_and_resumes(home, sqlite_db, model_files,
                                                                             small_disk, monkeypatch):
    mount, fill, free = small_disk
    kept = mount / "kept"
    kept.mkdir()
    monkeypatch.setenv("HYDRA_KEPT_DIR", str(kept))
    assert load_settings().kept_dir == kept
    activate(sqlite_db, model_files["bad"])  # every image confirmed Bad: every image is kept
    for chunk in range(20):
        drop(home.input_dir, f"{PLOT}-9-{chunk:04d}.png", png_bytes(chunk, size=(64, 64)))
    fill()
    instance = dg.DagsterInstance.ephemeral()
    (request,) = tick(instance).run_requests
    failed = run_request(instance, request, raise_on_error=False)
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "keep"
    message = failure.event_specific_data.error.to_string()
    assert "No space left on device" in message and str(kept) in message, message
    with sqlite_db.read() as s:
        decisions = list(s.scalars(select(KeepDecision)))
    assert all(d.kept_path and Path(d.kept_path).is_file() for d in decisions if d.keep)  # nothing unstored
    assert not decisions  # the Keeper writes its decisions in one transaction after the copies
    assert not [p for p in kept.rglob("*") if p.name.endswith(".partial")]

    free()
    retry = run_request(instance, request)  # what a run retry does: the same request again
    assert retry.success
    c = counts(sqlite_db, home.input_dir)
    assert c.registered == c.inferences == c.keep_decisions == c.inferences_with_decision == 20
    with sqlite_db.read() as s:
        paths = list(s.scalars(select(KeepDecision.kept_path)))
    assert len(paths) == 20 and all(Path(p).is_file() and Path(p).is_relative_to(kept) for p in paths)


def test_quarantine_folder_full_keeps_good_files_flowing_and_resumes(home, sqlite_db, model_files, small_disk,
                                                                     monkeypatch):
    mount, fill, free = small_disk
    quarantine = mount / "quarantine"
    quarantine.mkdir()
    monkeypatch.setenv("HYDRA_QUARANTINE_DIR", str(quarantine))
    activate(sqlite_db, model_files["good"])
    bad = drop(home.input_dir, "not-a-hydra-name.png", png_bytes(99, size=(64, 64)))
    unknown = drop(home.input_dir, "NoSuchPlot-9-0001.png", png_bytes(98, size=(64, 64)))
    for chunk in range(5):
        drop(home.input_dir, f"{PLOT}-10-{chunk:04d}.png", png_bytes(chunk))
    fill()
    instance = dg.DagsterInstance.ephemeral()
    result = tick(instance)
    for request in result.run_requests or []:
        assert run_request(instance, request).success
    c = counts(sqlite_db, home.input_dir)
    assert c.registered == c.inferences == 5, "a full quarantine folder stopped good files"
    assert bad.exists() and unknown.exists(), "a file that could not be quarantined was lost"
    with sqlite_db.read() as s:
        assert s.scalar(select(func.count(Image.id)).where(Image.status == "quarantined")) == 0
    assert not [p for p in quarantine.rglob("*") if p.name.endswith(".partial")]

    free()
    tick(instance, result.cursor)
    assert not bad.exists() and not unknown.exists()
    with sqlite_db.read() as s:
        rows = list(s.scalars(select(Image).where(Image.status == "quarantined")))
    assert sorted(r.file_name for r in rows) == sorted([bad.name, unknown.name])
    assert all(Path(r.stored_path).is_file() and Path(r.stored_path).is_relative_to(quarantine) for r in rows)
