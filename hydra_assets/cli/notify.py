"""`hydra notify`: where alarms and Bad run flags are sent outside the browser (webhooks, e-mail)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from hydra_assets import catalog
from hydra_assets.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    USER_OPTION,
    acting_user,
    database,
    echo_json,
    friendly_errors,
    settings,
)
from hydra_assets.notify import (
    DeliveryError,
    NotifyError,
    add_target,
    dispatch,
    remove_target,
    send_test,
    set_enabled,
    target_states,
)


def _refusals(command: Callable[..., Any]) -> Callable[..., Any]:
    """A target that cannot work is refused with one line and exit code 2, like the catalogue's refusals."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NotifyError as error:
            click.echo(f"error: {error}", err=True)
            raise SystemExit(EXIT_USAGE) from error

    return wrapper


@click.group()
def notify() -> None:
    """Alarms and Bad run flags sent to webhooks (chat tools) and e-mail, per plot group (docs/notifications.md)."""


@notify.command("add")
@click.option("--group", default=None, help="Plot group or super group whose alarms and flags are sent.")
@click.option("--all", "all_groups", is_flag=True, help="Every group.")
@click.option("--webhook", default=None, help="URL receiving a JSON POST ({\"text\": …} and structured fields).")
@click.option("--email", default=None, help="Address receiving e-mails through HYDRA_SMTP_HOST.")
@click.option("--events", default="alarm,flag", show_default=True, help="alarm, flag (Bad run flags) or both.")
@click.option("--interval", type=click.IntRange(min=0), default=300, show_default=True,
              help="At most one message per this many seconds; what arrives meanwhile goes in the next one.")
@USER_OPTION
@friendly_errors
@_refusals
def notify_add(group: str | None, all_groups: bool, webhook: str | None, email: str | None, events: str,
               interval: int, user_name: str) -> None:
    """Send a group's alarms and Bad flags to a webhook or an e-mail address."""
    if (group is None) == (not all_groups):
        raise NotifyError("give either --group G or --all")
    if (webhook is None) == (email is None):
        raise NotifyError("give one of --webhook or --email")
    kind, address = ("webhook", webhook) if webhook is not None else ("email", email)
    db = database()
    user = acting_user(db, user_name)
    made = catalog.guarded_write(
        db, user, "admin", None, "add notification target",
        lambda s: add_target(s, kind=kind, address=address or "", group=group, events=events,
                             min_interval_s=interval, by=user),
        detail=f"{kind} {address} for {group or 'every group'}")
    click.echo(f"target {made.id}: {kind} {made.address} for {group or 'every group'} "
               f"({made.events}; at most one message per {interval} s)")


@notify.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@friendly_errors
def notify_list(fmt: str) -> None:
    """Targets with what is pending, sent and given up, and the last error."""
    with database().read() as s:
        states = target_states(s)
    if fmt == "json":
        echo_json([{
            "id": t.id, "kind": t.kind, "address": t.address, "group": t.group, "events": t.events,
            "interval_s": t.min_interval_s, "enabled": t.enabled, "pending": t.pending, "sent": t.sent,
            "given_up": t.given_up, "last_sent_at": t.last_sent_at, "last_error": t.last_error,
        } for t in states])
        return
    if not states:
        click.echo("no notification targets (add one with `hydra notify add`)")
        return
    for t in states:
        off = "" if t.enabled else " [disabled]"
        last = f"last sent {t.last_sent_at:%Y-%m-%d %H:%M:%S} UTC" if t.last_sent_at else "nothing sent yet"
        click.echo(f"{t.id:>3}  {t.kind:<7} {t.address}  group {t.group or '(all)'}  {t.events}  "
                   f"every {t.min_interval_s} s{off}")
        click.echo(f"     {t.pending} pending, {t.sent} sent, {t.given_up} given up; {last}")
        if t.last_error:
            click.echo(f"     last error: {t.last_error}")


@notify.command("remove")
@click.argument("target_id", type=int)
@USER_OPTION
@friendly_errors
@_refusals
def notify_remove(target_id: int, user_name: str) -> None:
    """Remove target ID and its unsent notifications."""
    db = database()
    catalog.guarded_write(db, acting_user(db, user_name), "admin", None, "remove notification target",
                          lambda s: remove_target(s, target_id), detail=f"target {target_id}")
    click.echo(f"removed target {target_id}")


@notify.command("enable")
@click.argument("target_id", type=int)
@click.option("--off", is_flag=True, help="Disable instead (nothing is queued for it meanwhile).")
@USER_OPTION
@friendly_errors
@_refusals
def notify_enable(target_id: int, off: bool, user_name: str) -> None:
    """Enable (or with --off disable) target ID."""
    db = database()
    catalog.guarded_write(db, acting_user(db, user_name), "admin", None, "enable notification target",
                          lambda s: set_enabled(s, target_id, not off), detail=f"target {target_id} off={off}")
    click.echo(f"target {target_id} {'disabled' if off else 'enabled'}")


@notify.command("test")
@click.argument("target_id", type=int)
@friendly_errors
@_refusals
def notify_test(target_id: int) -> None:
    """Send a test message to target ID now (no rate limit); exit 1 with the reason when it fails."""
    try:
        send_test(database(), settings(), target_id)
    except DeliveryError as error:
        click.echo(f"failed: {error}", err=True)
        raise SystemExit(EXIT_FAILED) from error
    click.echo(f"test message sent to target {target_id}")


@notify.command("send")
@friendly_errors
def notify_send() -> None:
    """One pass of the notifier (what the `notifications` sensor does every 30 s): for cron or debugging."""
    outcome = dispatch(database(), settings())
    click.echo(outcome.summary())
    if outcome.failed:
        raise SystemExit(EXIT_FAILED)
