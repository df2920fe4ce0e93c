"""`hydra model`: the model library from the command line.

Acts as the system user ``cli`` or as ``--user NAME`` / ``$HYDRA_USER``, who then needs the
``activate_models`` / ``edit_thresholds`` permission like on the Library page.  Every activation and
threshold edit lands in the audit log under that name.
"""

from __future__ import annotations

import click

from hydra_assets.catalog import CatalogError
from hydra_assets.cli.common import USER_OPTION, acting_user, database, echo_json, friendly_errors, settings


@click.group()
def model() -> None:
    """The model library: list versions, activate or deactivate one, edit thresholds."""


@model.command("list")
@click.argument("plot_type_name", metavar="[PLOT_TYPE]", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@friendly_errors
def model_list(plot_type_name: str | None, fmt: str) -> None:
    """List model versions (of one plot type, or all) with activity, metrics and thresholds (* active, c challenger)."""
    from hydra_assets.ml.registry import list_models

    rows = list_models(database(), plot_type_name)
    if fmt == "json":
        echo_json(rows)
        return
    if not rows:
        click.echo("no models yet: hydra train PLOT_TYPE")
    for r in rows:
        validation = (r["metrics"] or {}).get("validation", {})
        f1 = validation.get("macro_f1")
        recall = validation.get("bad_recall")
        click.echo(f"{'*' if r['active'] else 'c' if r['challenger'] else ' '} {r['plot_type']:<24} {r['model']:<28} {r['topology']:<12} "
                   f"{r['input_size'][0]}x{r['input_size'][1]:<5} n={r['training_set_size']:<6} "
                   f"macroF1={'-' if f1 is None else f'{f1:.3f}'} "
                   f"badRecall={'-' if recall is None else f'{recall:.3f}'} "
                   f"validationRuns={validation.get('n_runs', '-')} "
                   f"thresholds=" + ",".join(f"{k}:{v['threshold']:.3f}" for k, v in r["thresholds"].items())
                   + (f" ({len(validation['warnings'])} warning(s): hydra model show)" if validation.get("warnings")
                      else ""))


@model.command("activate")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.argument("version")
@USER_OPTION
@friendly_errors
def model_activate(plot_type_name: str, version: str, user_name: str) -> None:
    """Make VERSION (e.g. 3, or hydra-T/3, local-T/1) the active model of PLOT_TYPE."""
    from hydra_assets.backtest import activation_notes
    from hydra_assets.ml.registry import activate_model, find_model

    config = settings()
    db = database(config)
    with db.read() as s:
        notes = activation_notes(s, find_model(s, plot_type_name, version))  # its latest backtest, or a warning
    row = activate_model(db, config, plot_type_name, version, acting_user(db, user_name))
    for note in notes:
        click.echo(note, err=note.startswith("warning"))
    click.echo(f"{row.key} is now the active model of {plot_type_name}")


@model.command("deactivate")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@USER_OPTION
@friendly_errors
def model_deactivate(plot_type_name: str, user_name: str) -> None:
    """Leave PLOT_TYPE without an active model (its images are recorded as no_model until one is activated)."""
    from hydra_assets.ml.registry import deactivate_model

    config = settings()
    db = database(config)
    previous = deactivate_model(db, config, plot_type_name, acting_user(db, user_name))
    click.echo(f"{plot_type_name} has no active model" + (f" (was {previous.key})" if previous else ""))


@model.command("set-threshold")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.argument("version")
@click.argument("label")
@click.argument("value", type=click.FloatRange(0, 1))
@USER_OPTION
@friendly_errors
def model_set_threshold(plot_type_name: str, version: str, label: str, value: float, user_name: str) -> None:
    """Set LABEL's threshold of model VERSION of PLOT_TYPE to VALUE (history kept)."""
    from hydra_assets.ml.registry import find_model, set_threshold

    db = database()
    with db.read() as s:
        model_id = find_model(s, plot_type_name, version).id
    set_threshold(db, model_id, label, value, acting_user(db, user_name))
    click.echo(f"threshold of {label} set to {value}")


@model.command("show")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.argument("version", required=False)
@friendly_errors
def model_show(plot_type_name: str, version: str | None) -> None:
    """JSON of one version (default: the active one)."""
    from hydra_assets.ml.active import active_model_row
    from hydra_assets.ml.registry import describe, find_model

    with database().read() as s:
        row = find_model(s, plot_type_name, version) if version else active_model_row(s, plot_type_name)
        if row is None:
            raise CatalogError(f"plot type {plot_type_name} has no active model; name a version")
        echo_json(describe(s, row))


# `hydra model backtest` and `backtest-report` live in their own module (hydra_assets/cli/backtest.py).
from hydra_assets.cli.backtest import model_backtest, model_backtest_report  # noqa: E402

model.add_command(model_backtest)
model.add_command(model_backtest_report)

# `hydra model challenger`, `challenger-report` and `promote` live in their own module (hydra_assets/cli/challenger.py).
from hydra_assets.cli.challenger import CHALLENGER_COMMANDS  # noqa: E402

for _command in CHALLENGER_COMMANDS:
    model.add_command(_command)
