"""Management commands: init, plot types, users, permissions, label import, news."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
from sqlalchemy import func, select

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError
from hydra_assets.cli.common import database, echo_json, friendly_errors, redact, settings
from hydra_assets.db.models import Image, NewsLine, PlotType, User

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def initialise(config=None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Bring a Hydra home up to date: folders, schema, roles, Dagster home, MLflow store (idempotent)."""
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.db.migrate import upgrade

    config = config or settings()
    config.ensure_folders()
    upgrade(config.db_url)
    db = HydraDB(config.db_url)
    try:
        db.write(catalog.ensure_roles, what="create roles")
    finally:
        db.dispose()
    dagster_yaml = config.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists() and REPO_DAGSTER_YAML.exists():
        shutil.copyfile(REPO_DAGSTER_YAML, dagster_yaml)
    from hydra_assets.tracking import ensure_tracking_store

    ensure_tracking_store(config)
    return {
        "home": str(config.home),
        "database": redact(config.db_url),
        "mlflow": redact(config.mlflow_tracking_uri),
        "dagster_home": str(config.dagster_home),
        "incoming": str(config.input_dir),
    }


@click.command()
@friendly_errors
def init() -> None:
    """Create or upgrade the Hydra home: folders, database schema, roles, Dagster home, MLflow store.

    Safe to run again: it only adds what is missing.
    """
    summary = initialise()
    for key, value in summary.items():
        click.echo(f"{key:>12}: {value}")


# ---- plot types -------------------------------------------------------------------------------------


@click.group("plot-type")
def plot_type() -> None:
    """Plot types: the kinds of monitoring plot, each with its labels and model."""


def _size(value: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in value.lower().replace("x", ",").split(",")]
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not a size like 128 or 128x128") from error
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise click.BadParameter(f"{value!r} is not a size like 128 or 128x128")
    return parts[0], parts[1]


@plot_type.command("add")
@click.argument("name")
@click.option("--labels", required=True, help="Comma-separated labels in palette order, e.g. Good,Bad,NoData.")
@click.option("--bad", required=True, help="Comma-separated labels that mean trouble (alarms, GradCAM).")
@click.option("--group", "groups", multiple=True, help="Plot group (detector) to put it in; repeatable.")
@click.option("--super-group", default=None, help="Super group of the plot group(s), e.g. Tracking.")
@click.option("--collect-percent", type=float, default=5.0, show_default=True,
              help="Share of confidently Good images kept anyway for labeling.")
@click.option("--topology", default="compact", show_default=True,
              help="compact | vgg16 | inceptionv3 | module:function of your own builder.")
@click.option("--input-size", default="128", show_default=True, help="Model input, e.g. 128 or 150x200 (HxW).")
@click.option("--description", default="")
@friendly_errors
def plot_type_add(name, labels, bad, groups, super_group, collect_percent, topology, input_size, description):  # type: ignore[no-untyped-def]
    """Add plot type NAME with its labels."""
    db = database()
    plot = db.write(
        lambda s: catalog.add_plot_type(
            s, name, labels, bad, groups=groups, super_group=super_group, collect_percent=collect_percent,
            topology=topology, input_size=_size(input_size), description=description,
        ),
        what="add plot type",
    )
    click.echo(f"added plot type {plot.name} (id {plot.id})")


@plot_type.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@friendly_errors
def plot_type_list(fmt: str) -> None:
    """List plot types with labels and counts of labeled images."""
    db = database()
    with db.read() as s:
        rows = []
        for plot in s.scalars(select(PlotType).order_by(PlotType.name)):
            labeled = s.scalar(select(func.count(Image.id)).where(Image.plot_type_id == plot.id,
                                                                  Image.label_id.is_not(None)))
            rows.append({
                "plot_type": plot.name,
                "labels": [lab.name for lab in plot.labels],
                "bad": [lab.name for lab in plot.labels if lab.is_bad],
                "topology": plot.topology,
                "input_size": [plot.input_height, plot.input_width],
                "collect_percent": plot.collect_percent,
                "groups": [g.name for g in plot.groups],
                "labeled_images": labeled,
            })
    if fmt == "json":
        echo_json(rows)
        return
    if not rows:
        click.echo("no plot types yet: hydra plot-type add NAME --labels Good,Bad --bad Bad")
    for r in rows:
        click.echo(f"{r['plot_type']:<28} labels={','.join(r['labels'])} bad={','.join(r['bad'])} "
                   f"topology={r['topology']} labeled={r['labeled_images']}")


# ---- users and permissions ------------------------------------------------------------------------


@click.group()
def user() -> None:
    """Users of the pages and their roles (viewer, labeler, expert, admin)."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(list(catalog.ROLES)), default="viewer", show_default=True)
@click.option("--full-name", default="")
@click.option("--email", default="")
@friendly_errors
def user_add(name: str, role: str, full_name: str, email: str) -> None:
    """Add user NAME with a role."""
    db = database()
    db.write(lambda s: catalog.add_user(s, name, role=role, full_name=full_name, email=email), what="add user")
    click.echo(f"added user {name} ({role})")


@user.command("list")
@friendly_errors
def user_list() -> None:
    """List users and their roles."""
    db = database()
    with db.read() as s:
        for u in s.scalars(select(User).order_by(User.name)):
            click.echo(f"{u.name:<24} {u.role.name if u.role else '-':<10} {'active' if u.active else 'disabled'}")


@click.group()
def permission() -> None:
    """Per-plot-type permissions: label, edit_thresholds, activate_models, admin."""


def _permission_args(command):  # type: ignore[no-untyped-def]
    command = click.option("--plot-type", default=None, help="Limit to one plot type (default: all).")(command)
    command = click.argument("what", type=click.Choice(list(catalog.PERMISSIONS)))(command)
    return click.argument("user_name", metavar="USER")(command)


@permission.command("grant")
@_permission_args
@friendly_errors
def permission_grant(user_name: str, what: str, plot_type: str | None) -> None:
    """Grant USER the permission WHAT (on --plot-type, or on all plot types)."""
    db = database()
    db.write(lambda s: catalog.grant(s, user_name, what, plot_type=plot_type, by="cli"), what="grant")
    click.echo(f"granted {what} to {user_name} on {plot_type or 'all plot types'}")


@permission.command("revoke")
@_permission_args
@friendly_errors
def permission_revoke(user_name: str, what: str, plot_type: str | None) -> None:
    """Revoke USER's own grant WHAT (role permissions stay with the role)."""
    db = database()
    removed = db.write(lambda s: catalog.revoke(s, user_name, what, plot_type=plot_type), what="revoke")
    if not removed:
        raise CatalogError(f"{user_name} holds no own grant {what} on {plot_type or 'all plot types'}")
    click.echo(f"revoked {what} from {user_name} on {plot_type or 'all plot types'}")


# ---- labels --------------------------------------------------------------------------------------


@click.group()
def label() -> None:
    """Human labels: import labeled folders."""


@label.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--plot-type", "plot_type_name", required=True, help="Plot type the images belong to.")
@click.option("--user", "user_name", default=None, help="Record the labels as this user's.")
@friendly_errors
def label_import(folder: Path, plot_type_name: str, user_name: str | None) -> None:
    """Import FOLDER/<label>/*.png as labeled images of a plot type.

    Every file is checked before anything is written: a folder that is not a label of the plot type or
    an unreadable image stops the import with a message naming it, and nothing is stored.
    """
    from hydra_assets.label_import import import_labeled_folder

    config = settings()
    db = database(config)
    result = import_labeled_folder(db, config, folder, plot_type_name, user_name=user_name)
    click.echo(f"imported {result.new_images} new image(s), {result.relabeled} label change(s), "
               f"{result.unchanged} unchanged, for {plot_type_name}: " +
               ", ".join(f"{k}={v}" for k, v in sorted(result.per_label.items())))


# ---- news ----------------------------------------------------------------------------------------


@click.group()
def news() -> None:
    """The news line shown on the Run page."""


@news.command("add")
@click.argument("text")
@click.option("--user", "user_name", default="cli")
@friendly_errors
def news_add(text: str, user_name: str) -> None:
    """Add a line of news."""
    if not text.strip():
        raise CatalogError("news text is empty")
    db = database()
    db.write(lambda s: s.add(NewsLine(text=text.strip()[:2000], created_by=user_name)), what="add news")
    click.echo("news added")


__all__ = ["init", "label", "news", "permission", "plot_type", "user"]
