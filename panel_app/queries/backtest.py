"""Backtests of a model version for the Library (issue 15), as `hydra_assets.backtest` describes them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets import backtest
from hydra_assets.db.models import Backtest, Model


def backtests_of(session: Session, model_id: int, *, limit: int = 5) -> list[dict[str, Any]]:
    """The version's latest backtests, newest first (status, progress, report)."""
    rows = session.scalars(select(Backtest).where(Backtest.candidate_model_id == model_id)
                           .order_by(Backtest.id.desc()).limit(limit))
    return [backtest.describe_backtest(session, row) for row in rows]


def activation_notes(session: Session, model_id: int) -> list[str]:
    """What activating the version says about its latest backtest (warnings start with "warning:")."""
    row = session.get(Model, model_id)
    return backtest.activation_notes(session, row) if row is not None else []
