"""The configured flag rules, one per plot group or super group (`hydra flags rule set|list`).

A group without a row uses the default: worst of its plot types, nothing ignored.  Changing a rule needs
the `certify` permission and is audited (the caller's `catalog.guarded_write`); the next computation of a
run uses it (`hydra flags compute RUN` recomputes at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.models import FlagRule, utcnow
from hydra_assets.flags.compute import rule_spec
from hydra_assets.flags.rules import GROUP, SUPER_GROUP, FlagRuleSpec, check_scope
from hydra_assets.flags.signoff import check_group, known_groups


@dataclass(frozen=True)
class RuleRow:
    """A group's rule as listed: configured or the default."""

    scope: str
    group_name: str
    spec: FlagRuleSpec
    configured: bool
    updated_by: str = ""


def set_rule(session: Session, group: str, *, scope: str = GROUP, rule: str = "worst_of", bad_share: float = 0.0,
             medium_share: float = 0.0, consecutive: int = 1, ignore_labels: Sequence[str] = (),
             user: str = "") -> FlagRule:
    """Create or replace the rule of one group (validated first: unknown group, rule or share → FlagError)."""
    check_scope(scope)
    check_group(session, scope, group)
    labels = sorted({label.strip() for label in ignore_labels if label.strip()})
    spec = FlagRuleSpec(rule=rule, bad_share=bad_share, medium_share=medium_share, consecutive=consecutive,
                        ignore_labels=frozenset(labels))
    row = session.scalar(select(FlagRule).where(FlagRule.scope == scope, FlagRule.group_name == group))
    if row is None:
        row = FlagRule(scope=scope, group_name=group)
        session.add(row)
    row.rule, row.bad_share, row.medium_share = spec.rule, spec.bad_share, spec.medium_share
    row.consecutive, row.ignore_labels = spec.consecutive, labels
    row.updated_at, row.updated_by = utcnow(), user
    session.flush()
    return row


def list_rules(session: Session) -> list[RuleRow]:
    """Every plot group and super group with its rule (configured, or the default)."""
    configured = {(r.scope, r.group_name): r for r in session.scalars(select(FlagRule))}
    rows = []
    for scope in (GROUP, SUPER_GROUP):
        for name in known_groups(session, scope):
            row = configured.get((scope, name))
            rows.append(RuleRow(scope, name, rule_spec(row) if row else FlagRuleSpec(), row is not None,
                                row.updated_by if row else ""))
    return rows
