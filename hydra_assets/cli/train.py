"""`hydra train`: train a plot type's model through the code location's `train_plot_type` job.

The command line acts as the system user ``cli`` (created with the admin role on first use: whoever runs
`hydra` already holds the database credentials), or as ``--user NAME`` / ``$HYDRA_USER``, who then needs
the ``activate_models`` permission to activate, like on the Library page.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.cli.common import USER_OPTION, acting_user, database, echo_json, friendly_errors, settings

TRAINING_JOB = "train_plot_type"
VALIDATION_KEYS = ("images", "accuracy", "macro_f1", "bad_recall", "per_label", "split", "runs", "n_runs", "per_run",
                   "unconfirmed_rate", "precision_target", "threshold_rules", "warnings")


class Progress:
    """One status line on stderr, redrawn in place on a terminal and one line per step otherwise."""

    def __init__(self, plot_type: str, enabled: bool) -> None:
        self.plot_type, self.enabled = plot_type, enabled
        self.tty = sys.stderr.isatty()
        self.started = time.perf_counter()
        self.epochs = 0
        self.last = ""

    def _show(self, text: str, *, final: bool = False) -> None:
        if not self.enabled:
            return
        line = f"[{self.plot_type} {time.perf_counter() - self.started:6.1f}s] {text}"
        if self.tty:
            click.echo("\r" + line.ljust(max(len(self.last), len(line))), err=True, nl=final)
        elif final or text != self.last:
            click.echo(line, err=True)
        self.last = line

    @staticmethod
    def _bar(done: float, total: float, width: int = 24) -> str:
        filled = int(width * done / total) if total else 0
        return "█" * filled + "░" * (width - filled)

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "training_set":
            if data.get("folds"):
                where = (f"cross-validation over {len(data['folds'])} runs "
                         f"({', '.join(str(r) for runs in data['folds'].values() for r in runs)})")
            elif data.get("validation_runs"):
                where = f"validation runs {', '.join(map(str, data['validation_runs']))}"
            else:
                where = "one run, no run-held-out validation"
            self._show(f"training set {data['training_set_id']}: {data['n_train']} train / "
                       f"{data['n_validation']} validation images; {where}", final=True)
        elif event == "fold":
            self._show(f"cross-validation {data['fold']} of {data['folds']}: {data['images']} held-out images",
                       final=True)
        elif event == "loading":
            self._show(f"loading {data['images']} images")
        elif event == "fit":
            self.epochs = data["epochs"]
            self._show(f"training {data['topology']} for {self.epochs} epochs")
        elif event == "batch" and self.tty:
            epoch, batches = data.get("epoch") or 1, data.get("batches") or 1
            done = (epoch - 1) + data["batch"] / batches
            self._show(f"{self._bar(done, self.epochs)} epoch {epoch}/{self.epochs} batch {data['batch']}/{batches}")
        elif event == "epoch":
            metrics = " ".join(f"{k}={data[k]:.3f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                               if k in data)
            self._show(f"{self._bar(data['epoch'], data['epochs'])} epoch {data['epoch']}/{data['epochs']} {metrics}",
                       final=not self.tty or data["epoch"] == data["epochs"])
        elif event in ("predicting", "registering"):
            self._show(event)
        elif event == "model":
            self._show(f"registered {data['name']}/{data['version']}", final=True)
        elif event == "thresholds":
            text = ", ".join(f"{k}={v:.3f}" for k, v in data["thresholds"].items())
            self._show(f"thresholds {text}{' (activated)' if data['activated'] else ''}", final=True)
        elif event == "training_report":
            self._show(f"training report {data['report_id']}: {data['disagreements']} disagreement(s)", final=True)


def run_training(
    config,  # type: ignore[no-untyped-def]
    plot_type: str,
    run_config: dict[str, Any],
    *,
    tags: dict[str, str] | None = None,
    instance=None,  # type: ignore[no-untyped-def]
):
    """Materialise the training assets of `plot_type` as one run of the code location's training job.

    The run goes to the Hydra Dagster instance (``DAGSTER_HOME``), so it appears in the Dagster UI with
    its logs and asset materialisations; the plot type's partition is added first.  The job and its
    resources are the code location's, bound to `config`'s installation.
    """
    import dagster as dg

    from hydra_assets.definitions import defs, resources_for
    from hydra_assets.partitions import plot_type as partitions

    if instance is None:
        config.dagster_home.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("DAGSTER_HOME", str(config.dagster_home))
        instance = dg.DagsterInstance.from_config(str(config.dagster_home))
    if not instance.has_dynamic_partition(partitions.name, plot_type):
        instance.add_dynamic_partitions(partitions.name, [plot_type])
    job = defs.resolve_job_def(TRAINING_JOB)
    try:
        return job.execute_in_process(run_config=run_config, instance=instance, partition_key=plot_type,
                                      tags=tags or {}, raise_on_error=True, resources=resources_for(config))
    except dg.DagsterExecutionStepExecutionError as error:
        cause = error.user_exception
        if isinstance(cause, (CatalogError, PermissionDenied)):
            raise cause from None
        if isinstance(cause, ValueError):  # TopologyError and bad options: a usage problem, not a crash
            raise CatalogError(str(cause)) from None
        raise


def training_summary(db, plot_type: str, run_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What `hydra train` prints: the version, its MLflow run, validation metrics and thresholds."""
    from sqlalchemy import select

    from hydra_assets import catalog
    from hydra_assets.db.models import Model, TrainingReport, TrainingSet
    from hydra_assets.ml.registry import describe

    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        training_set = s.scalar(select(TrainingSet).where(TrainingSet.plot_type_id == plot.id,
                                                          TrainingSet.dagster_run_id == run_id))
        model = s.scalar(select(Model).where(Model.training_set_id == training_set.id).order_by(Model.id.desc()))
        report = s.scalar(select(TrainingReport).where(TrainingReport.model_id == model.id)
                          .order_by(TrainingReport.id.desc()))
        active = s.scalar(select(Model).where(Model.plot_type_id == plot.id, Model.active.is_(True)))
        info = describe(s, model)
    validation = (info["metrics"] or {}).get("validation", {})
    counts = training_set.label_counts or {}
    return {
        "plot_type": plot_type,
        "model": info["model"],
        "name": info["name"],
        "version": info["version"],
        "mlflow_run_id": info["mlflow_run_id"],
        "model_uri": info["model_uri"],
        "dagster_run_id": run_id,
        "topology": info["topology"],
        "input_size": info["input_size"],
        "training_set": {"id": training_set.id, "sampling": training_set.sampling, "n_train": training_set.n_train,
                         "n_validation": training_set.n_validation,
                         "excluded_labels": counts.get("excluded", {}), "split": counts.get("split"),
                         "train_runs": counts.get("train_runs"), "validation_runs": counts.get("validation_runs"),
                         "folds": counts.get("folds")},
        "training_seconds": (info["metrics"] or {}).get("training_seconds"),
        "validation": {k: validation.get(k) for k in VALIDATION_KEYS},
        "novelty": (info["metrics"] or {}).get("novelty"),
        "thresholds": {k: v["threshold"] for k, v in info["thresholds"].items()},
        "activated": bool(model.active),
        "active_model": active.key if active else None,
        "training_report": {"id": report.id if report else None,
                            "disagreements": report.n_disagreements if report else None},
    }


def validation_text(summary: dict[str, Any]) -> list[str]:
    """What a person should read after training: where the figures come from, per run, and the warnings."""
    validation = summary.get("validation") or {}
    lines = [f"validation: {validation.get('split') or 'runs'}, {validation.get('n_runs') or 0} run(s) "
             f"({', '.join(map(str, validation.get('runs') or []))}), {validation.get('images') or 0} images, "
             f"precision target {validation.get('precision_target')}"]
    for run, row in (validation.get("per_run") or {}).items():
        def share(value: float | None) -> str:
            return "-" if value is None else f"{value:.1%}"
        lines.append(f"  run {run}: {row['images']} images ({row['bad']} Bad), accuracy {share(row['accuracy'])}, "
                     f"Bad recall {share(row['bad_recall'])}, false alarms {share(row['false_alarms'])}, "
                     f"unconfirmed {share(row['unconfirmed'])}")
    for label, rule in (validation.get("threshold_rules") or {}).items():
        lines.append(f"  threshold {label}: {rule}")
    novelty = summary.get("novelty") or {}
    if novelty:
        rate = novelty.get("validation_rate")
        lines.append(f"  novelty limit {novelty['limit']:.4f} ({novelty['quantile']:.0%} of {novelty['train_images']} "
                     f"training images); validation images above it: {'-' if rate is None else f'{rate:.1%}'}")
    lines += [f"WARNING: {w}" for w in validation.get("warnings") or []]
    return lines


def _size(value: str | None) -> list[int]:
    if not value:
        return []
    try:
        parts = [int(v) for v in value.lower().replace("x", ",").split(",")]
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not a size like 128 or 150x200") from error
    return parts * 2 if len(parts) == 1 else parts


@click.command()
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.option("--topology", default=None, help="compact | vgg16 | inceptionv3 | module:function (default: the plot "
                                               "type's).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: the topology's (compact 12).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--input-size", default=None, help="Model input, e.g. 128 or 150x200 (default: the plot type's).")
@click.option("--weights", "weights_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local weights file to start from (transfer learning); nothing is ever downloaded.")
@click.option("--sampling", type=click.Choice(["balanced", "all"]), default="balanced", show_default=True,
              help="balanced: every label down to the number of Bad images; all: every labeled image.")
@click.option("--min-per-label", type=click.IntRange(min=2), default=10, show_default=True,
              help="Labels with fewer labeled images are left out; two labels (one bad) must reach it.")
@click.option("--max-per-label", type=click.IntRange(min=0), default=0, help="Cap per label (0: none).")
@click.option("--validation-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True)
@click.option("--seed", type=int, default=12345, show_default=True)
@click.option("--augment/--no-augment", default=False, show_default=True,
              help="Train on lightly shifted, stretched and brightened copies (features that move between runs).")
@click.option("--precision-target", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Confirmed precision each label's threshold must reach on validation (default: the plot type's).")
@click.option("--activate", "activate", flag_value="always", help="Make the new version active.")
@click.option("--activate-if-better", "activate", flag_value="if_better",
              help="Activate only if it beats the active version on the same validation set (or none is active).")
@click.option("--no-activate", "activate", flag_value="never", default=True, help="Leave activation alone (default).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress line on stderr.")
@click.option("--backtest-runs", default=None, metavar="A-B",
              help="Then backtest the new version on these stored runs and say what activating it would mean.")
@USER_OPTION
@friendly_errors
def train(plot_type_name: str, topology: str | None, epochs: int | None, batch_size: int | None,
          learning_rate: float | None, input_size: str | None, weights_path: str | None, sampling: str,
          min_per_label: int, max_per_label: int, validation_fraction: float, seed: int,
          precision_target: float | None, augment: bool, activate: str, progress: bool, user_name: str,
          backtest_runs: str | None) -> None:
    """Train a model for PLOT_TYPE through Dagster and print a JSON summary.

    Runs the training_set, model, thresholds and training_report assets of the plot type's partition as
    one run of the `train_plot_type` job (visible in the Dagster UI); each step is an MLflow run and the
    model is registered as `hydra-PLOT_TYPE`.  The split is by run; where the validation figures come from,
    per-run figures and warnings are printed on stderr after training.
    """
    from hydra_assets.cli import train_backtest

    if backtest_runs:  # checked before training: bad runs train nothing
        train_backtest.check_runs(database(), plot_type_name, backtest_runs, activate)
    summary = train_plot_type(
        plot_type_name, topology=topology, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        input_size=_size(input_size), weights_path=weights_path, sampling=sampling, min_per_label=min_per_label,
        max_per_label=max_per_label, validation_fraction=validation_fraction, seed=seed, activate=activate,
        progress=progress, user_name=user_name, precision_target=precision_target, augment=augment,
    )
    for line in validation_text(summary):
        click.echo(line, err=True)
    if backtest_runs:
        config, db = settings(), database()
        summary["backtest"] = train_backtest.backtest_new_version(config, db, plot_type_name, summary["version"],
                                                                  backtest_runs, acting_user(db, user_name))
    echo_json(summary)


def train_plot_type(
    plot_type_name: str,
    *,
    topology: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    input_size: list[int] | None = None,
    weights_path: str | None = None,
    sampling: str = "balanced",
    min_per_label: int = 10,
    max_per_label: int = 0,
    validation_fraction: float = 0.2,
    seed: int = 12345,
    activate: str = "never",
    progress: bool = False,
    user_name: str = "cli",
    precision_target: float | None = None,
    augment: bool = False,
    config=None,  # type: ignore[no-untyped-def]
) -> dict[str, Any]:
    """`hydra train` as a function (the demo and scripts call it): runs the job, returns the JSON summary.

    Raises `CatalogError` (refusals, e.g. `TrainingRefused`) and `PermissionDenied` like the pages do.
    """
    from hydra_assets import catalog
    from hydra_assets.ml.fit import configure_tensorflow
    from hydra_assets.ml.steps import add_progress_listener

    config = config or settings()
    db = database(config)
    with db.read() as s:
        plot_id = catalog.get_plot_type(s, plot_type_name).id
    user = acting_user(db, user_name)
    if activate != "never":
        with db.read() as s:
            if not catalog.has_permission(s, user, "activate_models", plot_id):
                raise PermissionDenied(f"user {user!r} may not activate models of {plot_type_name} "
                                       "(needs 'activate_models'); train without --activate or use --user")
    configure_tensorflow()
    from hydra_assets.tracking import ensure_tracking_store

    ensure_tracking_store(config)
    run_config = {
        "ops": {
            "training_set": {"config": {"sampling": sampling, "validation_fraction": validation_fraction,
                                        "min_per_label": min_per_label, "max_per_label": max_per_label,
                                        "seed": seed}},
            "model": {"config": {"topology": topology or "", "epochs": epochs or 0, "batch_size": batch_size or 0,
                                 "learning_rate": learning_rate or 0.0, "input_size": list(input_size or []),
                                 "weights_path": os.path.abspath(weights_path) if weights_path else "",
                                 "seed": seed, "created_by": user, "augment": augment}},
            "thresholds": {"config": {"activate": activate, "user": user,
                                      "precision_target": precision_target or 0.0}},
        },
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    stop = add_progress_listener(Progress(plot_type_name, progress))
    try:
        result = run_training(config, plot_type_name, run_config, tags={"hydra/user": user,
                                                                        "hydra/plot_type": plot_type_name})
    finally:
        stop()
    try:
        return training_summary(db, plot_type_name, result.run_id)
    finally:
        db.dispose()
