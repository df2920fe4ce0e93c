"""Chunks whose runs failed for good are submitted again, a few times, with growing pauses.

Why: a run that fails after Dagster's own retries (the database away longer than `db_outage_seconds` on
every attempt, a predictor that would not start) leaves its files in the incoming folder, or its images
registered but unclassified, and the sensor never requests them again (the run key is taken).  Nothing is
lost, but a night shift would come back to a silent gap.  So the sensor submits such a chunk again: same
files, same partition, a new run key `<key>~<n>`, at most `MAX_RESUBMISSIONS` times, each after a longer
pause.  Every step is idempotent, so a resubmission of a half-done chunk finishes it without duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_RESUBMISSIONS = 3
FIRST_PAUSE_S = 60.0  # then 2 min, 4 min: a database restart or a full disk has time to be fixed
RESUBMISSION_TAG = "hydra/resubmission"
KEEP_TAGS = ("hydra/run", "hydra/chunks", "hydra/files", "hydra/source")


@dataclass(frozen=True)
class FailedRun:
    """What the sensor needs of a failed `ingest_chunk` run."""

    run_id: str
    run_key: str
    partition: str
    tags: Mapping[str, str]
    run_config: Mapping
    ended_at: float
    will_retry: bool  # Dagster's auto-retry daemon will still re-execute it


@dataclass(frozen=True)
class Resubmission:
    run_key: str
    partition: str
    tags: dict[str, str]
    run_config: Mapping
    replaces: str  # the failed run's id


def resubmission_number(run_key: str) -> tuple[str, int]:
    """`ingest-42-ab~2` → (`ingest-42-ab`, 2); a first run's key → (key, 0)."""
    base, _, number = run_key.rpartition("~")
    return (base, int(number)) if base and number.isdigit() else (run_key, 0)


def next_key(run_key: str) -> tuple[str, int]:
    """The key and number of the next resubmission of the run with `run_key`."""
    base, done = resubmission_number(run_key)
    return f"{base}~{done + 1}", done + 1


def pause_before(number: int) -> float:
    """Seconds after the failure before resubmission `number` (1, 2, …)."""
    return FIRST_PAUSE_S * 2 ** (number - 1)


def plan_resubmissions(failed: Iterable[FailedRun], *, now: float, existing_keys: set[str],
                       limit: int = 10) -> list[Resubmission]:
    """The failed runs to submit again now: given up on by Dagster, paused long enough, not yet resubmitted
    (`existing_keys`: run keys already in the instance), at most `MAX_RESUBMISSIONS` per chunk."""
    plans: list[Resubmission] = []
    for run in sorted(failed, key=lambda r: r.ended_at):
        if run.will_retry or not run.run_key.startswith("ingest-"):
            continue
        key, number = next_key(run.run_key)
        if number > MAX_RESUBMISSIONS or key in existing_keys or now - run.ended_at < pause_before(number):
            continue
        tags = {k: v for k, v in run.tags.items() if k in KEEP_TAGS}
        tags[RESUBMISSION_TAG] = f"{number} of {MAX_RESUBMISSIONS} (run {run.run_id} failed)"
        plans.append(Resubmission(key, run.partition, tags, run.run_config, run.run_id))
        if len(plans) >= limit:
            break
    return plans
