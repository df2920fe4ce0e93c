"""Thresholds on hand-computed cases: clean split, ties, never-present label, equal weights, one class; the
precision target with two labels; per-label figures that agree with the confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest

from hydra_assets.ml.evaluation import confusion
from hydra_assets.ml.thresholds import (
    NEVER_CONFIRMS,
    NEVER_SEEN_THRESHOLD,
    decide,
    evaluate_at_thresholds,
    max_f1_threshold,
    select_thresholds,
)


def test_clean_split_threshold_halfway_in_the_gap():
    # Cut at 0.8 confirms both positives and nothing else: F1 = 1; halfway to the next weight (0.3) = 0.55.
    found = max_f1_threshold(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.3, 0.1]))
    assert found.f1 == pytest.approx(1.0)
    assert found.threshold == pytest.approx(0.55)
    assert (found.precision, found.recall, found.support) == (1.0, 1.0, 2)


def test_best_cut_inside_the_ranking():
    # desc weights 0.9 0.7 0.5 0.3 with labels 1 0 1 0; F1 by cut: 0.9→2/3, 0.7→1/2, 0.5→4/5, 0.3→2/3.
    found = max_f1_threshold(np.array([1, 0, 1, 0]), np.array([0.9, 0.7, 0.5, 0.3]))
    assert found.f1 == pytest.approx(0.8)
    assert found.threshold == pytest.approx(0.4)  # halfway between 0.5 and 0.3
    assert found.precision == pytest.approx(2 / 3) and found.recall == pytest.approx(1.0)


def test_ties_bad_prefers_recall_good_prefers_precision():
    # labels 1 0 0 1 by descending weight: F1 2/3 at cut 0.9 (TP1 FP0) and at cut 0.3 (TP2 FP2).
    y, w = np.array([1, 0, 0, 1]), np.array([0.9, 0.7, 0.5, 0.3])
    recall_first = max_f1_threshold(y, w, prefer="recall")
    precision_first = max_f1_threshold(y, w, prefer="precision")
    assert recall_first.f1 == pytest.approx(2 / 3) == precision_first.f1
    assert recall_first.threshold == pytest.approx(0.3) and recall_first.recall == 1.0
    assert precision_first.threshold == pytest.approx(0.8) and precision_first.precision == 1.0


def test_label_never_present_gets_threshold_one_and_no_f1():
    found = max_f1_threshold(np.array([0, 0, 0]), np.array([0.2, 0.9, 0.5]))
    assert found.threshold == NEVER_SEEN_THRESHOLD and found.f1 is None and found.support == 0


def test_all_weights_equal():
    found = max_f1_threshold(np.array([1, 0, 1, 0]), np.full(4, 0.5))
    assert found.threshold == pytest.approx(0.5)
    assert found.f1 == pytest.approx(2 / 3)  # all confirmed: P=0.5, R=1


def test_empty_input_does_not_crash():
    found = max_f1_threshold(np.array([], dtype=bool), np.array([]))
    assert found.threshold == NEVER_SEEN_THRESHOLD and found.f1 is None


def test_single_class_validation_set():
    weights = np.array([[0.8, 0.2], [0.6, 0.4], [0.9, 0.1]])
    chosen = select_thresholds(weights, np.zeros(3, dtype=int), ["Good", "Bad"], bad_labels=["Bad"])
    assert chosen["Good"].f1 == pytest.approx(1.0)
    assert chosen["Good"].threshold == pytest.approx(0.6)  # confirms all three, nothing lower seen
    assert chosen["Bad"].threshold == NEVER_SEEN_THRESHOLD and chosen["Bad"].f1 is None


def test_select_thresholds_multi_label_and_evaluate():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, size=300)
    logits = rng.normal(size=(300, 3)) + 3 * np.eye(3)[true]
    weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = ["Good", "Bad", "NoData"]
    chosen = select_thresholds(weights, true, names, bad_labels=["Bad"])
    assert set(chosen) == set(names)
    report = evaluate_at_thresholds(weights, true, names, {n: t.threshold for n, t in chosen.items()})
    for name in names:
        # evaluating at the chosen (halfway) threshold reproduces the F1 found on the same data
        assert report[name]["f1"] == pytest.approx(chosen[name].f1)
    # brute force: no cut at an observed weight does better than the chosen F1 (confirmed = top label >= cut)
    top = weights.argmax(axis=1)
    for k, name in enumerate(names):
        def f1_at(c, k=k):
            confirmed = (top == k) & (weights[:, k] >= c)
            return 2 * np.sum(confirmed & (true == k)) / (np.sum(confirmed) + np.sum(true == k))
        assert chosen[name].f1 == pytest.approx(max(f1_at(c) for c in np.unique(weights[:, k])))


def test_shape_mismatch_refused():
    with pytest.raises(ValueError, match="do not match"):
        select_thresholds(np.zeros((3, 2)), np.zeros(3, dtype=int), ["A", "B", "C"])
    with pytest.raises(ValueError, match="differ"):
        max_f1_threshold(np.zeros(3), np.zeros(4))


def test_decide_unconfirmed_when_below_threshold():
    names = ["Good", "Bad"]
    out = decide(np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8]]), names, {"Good": 0.6, "Bad": 0.5})
    assert out == ["Good", None, "Bad"]


def test_million_predictions_is_fast():
    import time

    rng = np.random.default_rng(1)
    y = rng.random(1_000_000) < 0.1
    w = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    start = time.perf_counter()
    found = max_f1_threshold(y, w)
    assert time.perf_counter() - start < 5.0  # ~0.3 s measured; generous on a shared 2-core box
    assert 0.3 < found.threshold < 0.8


def _two_labels(n: int = 400, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Good/Bad softmax weights where a fifth of the Good images look half-Bad (weights 0.5-0.7 Bad)."""
    rng = np.random.default_rng(seed)
    true = (rng.random(n) < 0.3).astype(int)  # 1 = Bad
    bad_weight = np.where(true == 1, rng.uniform(0.55, 1.0, n), rng.uniform(0.0, 0.45, n))
    confusing = (true == 0) & (rng.random(n) < 0.2)
    bad_weight[confusing] = rng.uniform(0.5, 0.7, confusing.sum())
    return np.stack([1 - bad_weight, bad_weight], axis=1), true


def test_two_labels_reach_the_precision_target_instead_of_half():
    weights, true = _two_labels()
    names = ["Good", "Bad"]
    plain = select_thresholds(weights, true, names, bad_labels=["Bad"])
    assert plain["Bad"].threshold < 0.6 and plain["Bad"].precision < 0.95  # max-F1 alone: ~0.5, confirms too much
    chosen = select_thresholds(weights, true, names, bad_labels=["Bad"], precision_target=0.95)
    assert chosen["Bad"].threshold > 0.6
    report = evaluate_at_thresholds(weights, true, names, {n: t.threshold for n, t in chosen.items()})
    for name in names:
        assert report[name]["precision"] >= 0.95
        assert chosen[name].precision == pytest.approx(report[name]["precision"])
    assert "raised from the max-F1 cut" in chosen["Bad"].rule and "0.95" in chosen["Bad"].rule
    # the raise goes to the *lowest* cut reaching the target: the next lower Bad weight would miss it
    bad_top = (weights[:, 1] >= weights[:, 0])
    lower = weights[bad_top & (weights[:, 1] < chosen["Bad"].threshold), 1]
    assert len(lower)
    at_lower = bad_top & (weights[:, 1] >= lower.max())
    assert np.mean(true[at_lower] == 1) < 0.95


def test_no_cut_reaches_the_target_never_confirms():
    # Bad and Good images with the same Bad weights: precision 0.5 at every cut.
    weights = np.array([[0.2, 0.8], [0.2, 0.8], [0.4, 0.6], [0.4, 0.6], [0.9, 0.1], [0.8, 0.2]])
    true = np.array([1, 0, 1, 0, 0, 0])
    chosen = select_thresholds(weights, true, ["Good", "Bad"], bad_labels=["Bad"], precision_target=0.95)
    assert chosen["Bad"].threshold == NEVER_CONFIRMS and "never confirms" in chosen["Bad"].rule


def test_per_label_figures_agree_with_the_confusion_matrix():
    # A Bad image whose Bad weight reaches a low Bad threshold but whose top label is Good is decided Good:
    # the matrix shows it as a Bad predicted Good, so Bad recall must not be 1.
    weights = np.array([[0.1, 0.9], [0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.8, 0.2]])
    true = np.array([1, 1, 1, 0, 0])
    thresholds = {"Good": 0.5, "Bad": 0.3}
    report = evaluate_at_thresholds(weights, true, ["Good", "Bad"], thresholds)
    matrix = confusion(true, np.array([1, 1, 0, 0, 0]), 2)
    assert matrix[1, 0] == 1  # one Bad image predicted Good
    assert report["Bad"]["recall"] == pytest.approx(matrix[1, 1] / matrix[1].sum()) == pytest.approx(2 / 3)
    assert report["Good"]["precision"] == pytest.approx(matrix[0, 0] / matrix[:, 0].sum()) == pytest.approx(2 / 3)
