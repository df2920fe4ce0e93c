"""Flags in Dagster: the run_flags asset per run number, the chunk job selecting it, and the label sensor
requesting recompute_flags for the runs a person labeled."""

from __future__ import annotations

import dagster as dg
import pytest
from flags_support import add_run, image_id, labels, setup_groups
from sqlalchemy import select
from test_ingest_support import home, model_files  # noqa: F401 - fixtures

from hydra_assets.assets.flags import FLAG_ASSETS
from hydra_assets.db.models import RunFlag
from hydra_assets.labeling import apply_labels
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.sensors.labels import label_changes

RUN = 812


@pytest.fixture
def flagged(sqlite_db):
    setup_groups(sqlite_db)
    add_run(sqlite_db, RUN, range(6), lambda pt, c: "bad" if pt == "A" and c >= 4 else "good")
    add_run(sqlite_db, RUN + 1, range(3), lambda pt, c: "good")
    return sqlite_db


def tracker(db, run=RUN) -> list[tuple[int, int, str]]:
    with db.read() as s:
        return [(r.first_chunk, r.last_chunk, r.flag) for r in s.scalars(
            select(RunFlag).where(RunFlag.run_number == run, RunFlag.group_name == "Tracker")
            .order_by(RunFlag.first_chunk))]


def materialize(instance: dg.DagsterInstance, run: int) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(run_number.name, [str(run)])
    return dg.materialize(FLAG_ASSETS, partition_key=str(run), instance=instance,
                          resources={"hydra": HydraResource()})


def test_run_flags_materializes_for_a_run_partition(flagged):
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(instance, RUN)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    assert meta["chunks"] == 6 and meta["images"] == 18 and meta["alarms"] == 2
    assert tracker(flagged) == [(0, 3, "Good"), (4, 5, "Bad")]
    assert materialize(instance, RUN).success  # again: the same rows, not twice as many
    assert tracker(flagged) == [(0, 3, "Good"), (4, 5, "Bad")]


def test_the_chunk_job_and_the_definitions_carry_the_flags():
    from hydra_assets.definitions import defs

    chunk_job = defs.resolve_job_def("ingest_chunk")
    assert {"image", "inference", "keep", "run_flags"} <= {node.name for node in chunk_job.nodes}
    recompute = defs.resolve_job_def("recompute_flags")
    assert {node.name for node in recompute.nodes} == {"run_flags"}
    assert recompute.partitions_def.name == "run_number"
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("run_flags")).parent_keys == {dg.AssetKey("keep")}
    sensor = defs.resolve_sensor_def("label_changes")
    assert sensor.job_name == "recompute_flags" and sensor.default_status == dg.DefaultSensorStatus.RUNNING


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"hydra": HydraResource()}) as context:
        return label_changes(context)


def test_a_label_requests_recomputation_of_its_run_and_the_run_changes_its_flag(flagged):
    instance = dg.DagsterInstance.ephemeral()
    materialize(instance, RUN)
    first = tick(instance, None)  # a new sensor starts after the labels that exist
    assert not first.run_requests and first.cursor == "0"
    assert not tick(instance, first.cursor).run_requests

    ids = labels(flagged)
    good = {image_id(flagged, RUN, "A", c): ids[("A", "Good")] for c in (4, 5)}
    flagged.write(lambda s: apply_labels(s, good, user_id=None))
    flagged.write(lambda s: apply_labels(s, {image_id(flagged, RUN + 1, "B", 0): ids[("B", "Bad")]}, user_id=None))
    result = tick(instance, first.cursor)
    assert sorted(r.partition_key for r in result.run_requests) == [str(RUN), str(RUN + 1)]
    assert result.cursor == "3"
    (added,) = result.dynamic_partitions_requests
    assert list(added.partition_keys) == [str(RUN + 1)]  # RUN's partition existed already
    assert all(r.run_key.endswith("-3") for r in result.run_requests)

    for request in result.run_requests:
        assert materialize(instance, int(request.partition_key)).success
    assert tracker(flagged) == [(0, 5, "Good")]
    assert tracker(flagged, RUN + 1) == [(0, 0, "Bad"), (1, 2, "Good")]
    assert not tick(instance, result.cursor).run_requests


def test_a_bulk_of_labels_over_many_runs_is_spread_over_ticks(sqlite_db):
    from hydra_assets.flags.relabel import relabeled_runs

    setup_groups(sqlite_db)
    for run in range(10, 15):
        add_run(sqlite_db, run, range(1), lambda pt, c: "good")
    ids = labels(sqlite_db)
    for run in range(10, 15):
        sqlite_db.write(lambda s, run=run: apply_labels(s, {image_id(sqlite_db, run, "A", 0): ids[("A", "Bad")],
                                                            image_id(sqlite_db, run, "B", 0): ids[("B", "Bad")]},
                                                        user_id=None))
    with sqlite_db.read() as s:
        first = relabeled_runs(s, 0, max_runs=2)
        second = relabeled_runs(s, first.last_id, max_runs=2)
        third = relabeled_runs(s, second.last_id, max_runs=2)
        rest = relabeled_runs(s, third.last_id, max_runs=2)
    assert (first.runs, first.last_id, first.labels) == ((10, 11), 4, 4)
    assert (second.runs, third.runs) == ((12, 13), (14,))
    assert (rest.runs, rest.last_id) == ((), third.last_id)


@pytest.mark.slow
def test_the_chunk_job_leaves_the_runs_flags(home, sqlite_db, model_files):
    """Files dropped → the real ingest_chunk job (Feeder, Predict, Keeper, then run_flags) → the run's flags."""
    from test_ingest_support import PLOT, activate, drop, png_bytes
    from test_ingest_support import tick as ingest_tick

    from hydra_assets import catalog
    from hydra_assets.db.models import PlotType, Run
    from hydra_assets.definitions import defs

    def group(s) -> None:  # type: ignore[no-untyped-def]
        plot_type = s.scalar(select(PlotType).where(PlotType.name == PLOT))
        plot_type.groups.append(catalog.ensure_plot_group(s, "FDC", super_group="Tracking"))

    sqlite_db.write(group)
    activate(sqlite_db, model_files["bad"])
    for chunk in (1, 2):
        drop(home.input_dir, f"{PLOT}-77-{chunk:04d}.png", png_bytes(chunk))
    instance = dg.DagsterInstance.ephemeral()
    (request,) = ingest_tick(instance).run_requests
    instance.add_dynamic_partitions(run_number.name, [request.partition_key])
    job = defs.resolve_job_def("ingest_chunk")
    assert job.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags,
                                  partition_key=request.partition_key).success
    assert tracker_like(sqlite_db, 77, "FDC") == [(1, 2, "Bad")]
    assert tracker_like(sqlite_db, 77, "Tracking", scope="super_group") == [(1, 2, "Bad")]
    with sqlite_db.read() as s:
        run = s.get(Run, 77)
        assert (run.chunk_count, run.alarm_count) == (2, 2)


def tracker_like(db, run: int, group: str, *, scope: str = "group") -> list[tuple[int, int, str]]:
    with db.read() as s:
        return [(r.first_chunk, r.last_chunk, r.flag) for r in s.scalars(
            select(RunFlag).where(RunFlag.run_number == run, RunFlag.scope == scope, RunFlag.group_name == group)
            .order_by(RunFlag.first_chunk))]
