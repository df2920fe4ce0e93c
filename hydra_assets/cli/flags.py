"""`hydra flags`: run quality flags — compute, show, rules, sign-off and the certification export."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hydra_assets.catalog import guarded_write
from hydra_assets.cli.common import EXIT_USAGE, USER_OPTION, acting_user, database, echo_json, friendly_errors
from hydra_assets.flags.rules import CONFIRM, FLAGS, GROUP, OVERRIDE, RULES, SCOPES, FlagError

SCOPE_OPTION = click.option("--scope", type=click.Choice(SCOPES), default=GROUP, show_default=True,
                            help="A plot group or a super group (detector system).")


def flag_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input for a rule, a range or a sign-off: one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FlagError as error:
            click.echo(f"error: {error}", err=True)
            raise SystemExit(EXIT_USAGE) from error

    return friendly_errors(wrapper)


@click.group()
def flags() -> None:
    """Run quality flags per plot group and super group: Good, Medium, Bad, Null over chunk ranges."""


@flags.command("compute")
@click.argument("runs", nargs=-1, type=int, required=True)
@flag_errors
def flags_compute(runs: tuple[int, ...]) -> None:
    """Compute the flags of RUNS now (the pipeline does this after every chunk and every label)."""
    from hydra_assets.flags.compute import compute_run_flags

    db = database()
    for run in runs:
        result = compute_run_flags(db, run)
        summary = ", ".join(f"{n} {flag}" for flag, n in sorted(result.flags.items())) or "no images"
        click.echo(f"run {run}: {result.chunks} chunks, {result.images} images -> {result.rows} ranges ({summary}) "
                   f"in {result.read_ms + result.rules_ms + result.write_ms:.0f} ms")


@flags.command("show")
@click.argument("run", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@flag_errors
def flags_show(run: int, as_json: bool) -> None:
    """The standing flags of RUN: each group's ranges, computed and signed-off flags, reasons."""
    from hydra_assets.flags.export import reason_text
    from hydra_assets.flags.signoff import standing_flags

    db = database()
    with db.read() as session:
        found = standing_flags(session, [run])
    if not found:
        raise FlagError(f"run {run} has no flags yet (no images, or not computed: hydra flags compute {run})")
    if as_json:
        echo_json([{"scope": f.scope, "group": f.group_name, "computed": f.computed, "flag": f.standing,
                    "ranges": [{"first_chunk": r.first_chunk, "last_chunk": r.last_chunk, "computed": r.computed,
                                "flag": r.standing, "reasons": list(r.reasons), "action": r.action,
                                "signed_by": r.signed_by, "signed_at": r.signed_at, "comment": r.comment}
                               for r in f.ranges]} for f in found])
        return
    for f in found:
        signed = f" (signed off by {f.signed_by}: {f.action})" if f.signed_by else ""
        click.echo(f"{f.scope} {f.group_name}: {f.standing}{signed}")
        for r in f.ranges:
            flag = r.standing if r.standing == r.computed else f"{r.standing} (computed {r.computed})"
            click.echo(f"  chunks {r.first_chunk}-{r.last_chunk}: {flag}  {reason_text(r.reasons)}")


@flags.group("rule")
def flags_rule() -> None:
    """How each group's flag is computed from its plot types' verdicts."""


@flags_rule.command("set")
@click.argument("group")
@SCOPE_OPTION
@click.option("--rule", type=click.Choice(RULES), default="worst_of", show_default=True,
              help="worst_of: the worst chunk verdict; bad_share: Bad above a share of Bad chunks; "
                   "consecutive: Bad only from N Bad chunks in a row.")
@click.option("--bad-share", type=float, default=0.0, show_default=True, help="bad_share: Bad above this share.")
@click.option("--medium-share", type=float, default=0.0, show_default=True,
              help="bad_share: Medium above this share.")
@click.option("--consecutive", type=int, default=1, show_default=True, help="consecutive: N chunks in a row.")
@click.option("--ignore-label", "ignore_labels", multiple=True, help="A label that means no data (e.g. NoData).")
@USER_OPTION
@flag_errors
def flags_rule_set(group: str, scope: str, rule: str, bad_share: float, medium_share: float, consecutive: int,
                   ignore_labels: tuple[str, ...], user_name: str) -> None:
    """Set GROUP's flag rule (needs the certify permission)."""
    from hydra_assets.flags.rulebook import set_rule
    from hydra_assets.flags.rules import FlagRuleSpec

    db = database()
    user = acting_user(db, user_name)
    spec = FlagRuleSpec(rule=rule, bad_share=bad_share, medium_share=medium_share, consecutive=consecutive,
                        ignore_labels=frozenset(ignore_labels))  # checked before anything is written
    guarded_write(db, user, "certify", None, "set flag rule",
                  lambda s: set_rule(s, group, scope=scope, rule=rule, bad_share=bad_share, medium_share=medium_share,
                                     consecutive=consecutive, ignore_labels=ignore_labels, user=user),
                  detail=f"{scope} {group!r}: {spec.describe()}")
    click.echo(f"{scope} {group}: {spec.describe()} (applies from the next computation; "
               "hydra flags compute RUN recomputes now)")


@flags_rule.command("list")
@flag_errors
def flags_rule_list() -> None:
    """Every plot group and super group with its rule."""
    from hydra_assets.flags.rulebook import list_rules

    db = database()
    with db.read() as session:
        rows = list_rules(session)
    if not rows:
        click.echo("no plot groups yet (hydra plot-type add NAME … --group GROUP)")
    for row in rows:
        origin = f"set by {row.updated_by or '?'}" if row.configured else "default"
        click.echo(f"{row.scope:<12} {row.group_name:<24} {row.spec.describe()} ({origin})")


@flags.command("signoff")
@click.argument("run", type=int)
@click.argument("group")
@SCOPE_OPTION
@click.option("--confirm", "confirm", is_flag=True, help="Confirm the flag as computed.")
@click.option("--override", "override", type=click.Choice(FLAGS), help="Set this flag instead.")
@click.option("--chunks", default="", help="Chunk ranges, e.g. 0-39 or 0-10,20-30 (default: the whole run).")
@click.option("--comment", default="", help="Why (required for an override).")
@USER_OPTION
@flag_errors
def flags_signoff(run: int, group: str, scope: str, confirm: bool, override: str | None, chunks: str, comment: str,
                  user_name: str) -> None:
    """Confirm or override RUN's flag for GROUP (needs the certify permission; audited)."""
    from hydra_assets.flags.signoff import record_signoff
    from hydra_assets.flags.standing import parse_ranges

    if confirm == (override is not None):
        raise FlagError("give either --confirm or --override FLAG")
    ranges: list[tuple[int | None, int | None]] = list(parse_ranges(chunks)) if chunks.strip() else [(None, None)]
    db = database()
    user = acting_user(db, user_name)
    action = CONFIRM if confirm else OVERRIDE
    for first, last in ranges:
        row = record_signoff(db, run, scope, group, action, override, comment, user, first, last)
        span = "whole run" if first is None else f"chunks {first}-{last}"
        click.echo(f"run {run} {group} {span}: {row.previous_flag} -> {row.flag} ({action} by {user})")


@flags.command("export")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), required=True)
@click.option("--group", "groups", multiple=True,
              help="A group (repeat for several; JSON: chunks Good in all of them). CSV default: every group.")
@click.option("--runs", "runs", required=True, help="Run numbers N or N-M.")
@SCOPE_OPTION
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@flag_errors
def flags_export(fmt: str, groups: tuple[str, ...], runs: str, scope: str, output: Path | None) -> None:
    """A certification file: golden JSON of Good chunk ranges, or a CSV of every flag, reason and sign-off."""
    from hydra_assets.flags.export import flags_csv, golden_json, parse_run_range

    first, last = parse_run_range(runs)
    db = database()
    with db.read() as session:
        if fmt == "json":
            text = golden_json(session, groups, first, last, scope=scope)
        else:
            text = flags_csv(session, first, last, groups=groups or None, scope=scope if groups else None)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
