"""bench/loop.py: the labeling loop's bookkeeping on a tiny configuration, and its queues on made-up arrays."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def loop():  # type: ignore[no-untyped-def]
    path = Path(__file__).resolve().parents[1] / "bench" / "loop.py"
    spec = importlib.util.spec_from_file_location("bench_loop", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["bench_loop"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    yield module
    sys.modules.pop("bench_loop", None)


def _pool(loop, n: int):  # type: ignore[no-untyped-def]
    return loop.Images(np.zeros((n, 4, 4, 3), np.float32), np.zeros((n, 2, 2), np.float32), np.zeros(n, int),
                       np.repeat(np.arange(n // 2 + 1), 2)[:n], np.arange(n), np.array(["nominal"] * n))


def test_queues_offer_only_unlabeled_images_in_their_order(loop) -> None:  # type: ignore[no-untyped-def]
    n = 6
    pool = _pool(loop, n)
    # weights over Good, Bad, NoData: image 3 is the most uncertain, then 1; 0, 2, 4, 5 are sure
    weights = np.array([[0.98, 0.01, 0.01], [0.6, 0.4, 0.0], [0.99, 0.01, 0.0], [0.5, 0.49, 0.01],
                        [0.97, 0.02, 0.01], [0.01, 0.98, 0.01]])
    top = weights.argmax(axis=1)
    novelty = np.array([0.1, 0.2, 0.9, 0.3, 0.5, 0.1])
    confirmed = np.array([True, False, True, False, True, True])
    current = loop.Classified(weights, top, confirmed, confirmed & (top != 0), novelty, limit=0.4)
    previous = loop.Classified(weights, np.where(np.arange(n) == 4, 1, top), confirmed, confirmed, novelty, limit=0.4)
    setup = replace(loop.TINY, collect_percent=0.0)
    unlabeled = np.array([0, 1, 2, 3, 4])  # image 5 is labeled already
    reference = (np.array([1.0, 5.0, 2.0, 0.5, 3.0, 9.0]), 2.0)

    def offer(strategy: str, before=previous):  # type: ignore[no-untyped-def]
        return loop.offer(strategy, pool, unlabeled, current, before, reference, setup, seed=1).tolist()

    assert offer("uncertain")[:2] == [3, 1]
    assert offer("novel")[:2] == [2, 4]  # novelty over its limit, largest first
    assert offer("reference")[:3] == [1, 4, 2]
    # the image whose top label changed between the two versions first, then the most uncertain
    assert offer("disagreement")[:3] == [4, 3, 1]
    assert offer("disagreement", before=None)[:2] == [3, 1]
    # the keep rule: unconfirmed images 1 and 3 (the novel ones 2 and 4 are kept too), oldest first; no collect
    assert offer("arrival") == [1, 2, 3, 4]
    for strategy in loop.STRATEGIES:  # only queued images: not the labeled 5, not the confirmed Good 0
        assert 5 not in offer(strategy) and 0 not in offer(strategy)
    # collected at 100 %: the confirmed Good image 0 joins the queue, after the priority-0 ones in arrival order
    setup = replace(loop.TINY, collect_percent=100.0)
    assert offer("arrival") == [1, 2, 3, 4, 0]
    assert offer("uncertain") == [3, 1, 4, 0, 2]
    with pytest.raises(ValueError, match="unknown strategy"):
        offer("random")


def test_labels_needed_and_report_say_a_missed_target(loop) -> None:  # type: ignore[no-untyped-def]
    def row(r: int, recall: float, false_alarms: float) -> dict:
        return {"round": r, "labels": 120 + 30 * r, "added": 30 * r, "picked": [], "picked_bad": 0,
                "bad_recall": recall, "false_alarms": false_alarms, "novel_good": 0.0, "auc": 0.9}

    arrival = [row(0, 0.5, 0.0), row(1, 0.8, 0.0), row(2, 0.96, 0.01)]
    ranked = [row(0, 0.5, 0.0), row(1, 0.97, 0.03), row(2, 0.97, 0.02)]
    missed = [row(0, 0.5, 0.0), row(1, 0.9, 0.0), row(2, 0.94, 0.0)]
    assert loop.labels_needed(arrival) == 60 and loop.labels_needed(ranked) == 60
    assert loop.labels_needed(missed) is None
    audited = {"images": 480, "flipped": 24, "first": 100, "caught": 19, "issues": 30, "flipped_issues": 18,
               "oof_accuracy_true": 0.9, "seconds": 1.0}
    text = "\n".join(loop.report("X", {"arrival": arrival, "uncertain": ranked, "novel": missed}, audited,
                                 replace(loop.TINY, rounds=2, per_round=30)))
    assert "uncertain    60 (total 180)  MISS (a third of arrival's 60 is 20)" in text
    assert "novel        not reached within 2 rounds (60 labels added)  MISS (not reached)" in text
    assert "19/24 = 79% MISS" in text
    # arrival order never reached: a ranked queue's need is only judged when it is below a third of the rounds'
    text = "\n".join(loop.report("X", {"arrival": missed, "uncertain": ranked}, audited,
                                 replace(loop.TINY, rounds=2, per_round=30)))
    assert "uncertain    60 (total 180)  UNDECIDED (arrival order needs more than 60; 60 is more than a third" in text
    early = [row(0, 0.5, 0.0), row(1, 0.96, 0.0), row(2, 0.96, 0.0)]
    text = "\n".join(loop.report("X", {"arrival": missed, "uncertain": early}, audited,
                                 replace(loop.TINY, rounds=6, per_round=30)))
    assert "uncertain    30 (total 150)  PASS (arrival order needs more than 180: a third of that is more than 60)" in text


@pytest.mark.slow
def test_tiny_loop_counts_every_label_once(loop) -> None:  # type: ignore[no-untyped-def]
    from hydra_assets.ml.fit import configure_tensorflow

    configure_tensorflow(2)
    setup = replace(loop.TINY, strategies=("arrival", "disagreement"), rounds=2, per_round=4,
                    threshold_folds=0)
    data = loop.make_data("CDC_timing", setup, seed=7, work=None)
    assert len(data.seed) == 3 * setup.seed_per_label and set(data.seed.truth.tolist()) == {0, 1, 2}
    assert len(data.pool) == setup.pool_runs * setup.pool_chunks and data.pool.pixels.shape[1:] == (24, 24, 3)
    assert (np.diff(data.pool.runs) >= 0).all()  # arrival order
    said: list[str] = []
    result = loop.run_loop(data, setup, seed=7, say=said.append)
    assert set(result) == {"arrival", "disagreement"}
    for strategy, rows in result.items():
        assert [r["round"] for r in rows] == [0, 1, 2]
        picked = [i for r in rows for i in r["picked"]]
        assert len(picked) == len(set(picked)), f"{strategy} labeled an image twice"
        assert all(0 <= i < len(data.pool) for i in picked)
        added = np.cumsum([len(r["picked"]) for r in rows]).tolist()
        assert [r["added"] for r in rows] == added
        assert [r["labels"] for r in rows] == [len(data.seed) + a for a in added]
        assert all(len(r["picked"]) <= setup.per_round for r in rows)
        assert all(r["picked_bad"] == int((data.pool.truth[r["picked"]] != 0).sum()) for r in rows)
        for r in rows:
            assert all(r[k] is None or 0.0 <= r[k] <= 1.0 for k in ("bad_recall", "false_alarms", "novel_good"))
            if r["bad_recall"] is not None:  # the missed Bad, by condition, are the ones recall did not count
                assert sum(r["missed"].values()) == r["bad"] - round(r["bad_recall"] * r["bad"])
    # a ranked queue always has images to offer: every round labels exactly per_round
    assert [len(r["picked"]) for r in result["disagreement"]] == [0, 4, 4]
    assert result["disagreement"][0]["bad_recall"] == result["arrival"][0]["bad_recall"]  # round 0 is shared
    assert len(said) == 1 + 2 * setup.rounds
