"""Ranked labeling queues and the label audit: pure rankings (hydra_assets/scores/queues.py, label_audit.py)."""

from __future__ import annotations

import numpy as np
import pytest

from hydra_assets.scores import label_audit, queues


def test_most_uncertain_first_is_the_smallest_margin_ties_keep_arrival_order():
    weights = np.array([[0.9, 0.1], [0.55, 0.45], [np.nan, 0.5], [0.6, 0.4], [0.45, 0.55], [0.3, 0.3]])
    assert queues.margins(weights)[:2] == pytest.approx([0.8, 0.1])
    # margins: 0.8, 0.1, nan, 0.2, 0.1, 0.0 -> 0.0 first, the two 0.1 in arrival order, NaN last
    assert queues.rank_uncertain(weights).tolist() == [5, 1, 4, 3, 0, 2]


def test_three_labels_margin_is_between_the_two_largest():
    assert queues.margins(np.array([[0.2, 0.5, 0.3]])) == pytest.approx([0.2])
    with pytest.raises(ValueError, match="2-D"):
        queues.margins(np.array([0.2, 0.8]))


def test_most_novel_and_most_unlike_the_reference_rank_by_score_over_limit():
    scores = np.array([0.5, 0.9, 0.3, np.nan, 0.4])
    limits = np.array([0.25, 0.9, 0.1, 0.5, 0.0])  # ratios 2, 1, 3, nan, (limit 0: unusable)
    assert queues.rank_novel(scores, limits).tolist() == [2, 0, 1, 3, 4]
    assert queues.rank_reference(scores, 0.5).tolist() == [1, 0, 4, 2, 3]


def test_disagreement_lists_only_images_whose_top_labels_differ_candidate_confident_first():
    active = np.array([0, 1, 1, -1, 2])
    candidate = np.array([1, 1, 0, 0, 0])
    assert queues.disagrees(active, candidate).tolist() == [True, False, True, False, True]
    assert queues.rank_disagreement(active, candidate).tolist() == [0, 2, 4]
    assert queues.rank_disagreement(active, candidate, np.array([0.6, 0.9, 0.95, 0.9, 0.7])).tolist() == [2, 4, 0]
    with pytest.raises(ValueError, match="one top label per image"):
        queues.disagrees(active, candidate[:2])


def test_rank_by_queue_name_and_unknown_queue():
    assert queues.rank(queues.UNCERTAIN, weights=np.array([[0.9, 0.1], [0.5, 0.5]])).tolist() == [1, 0]
    assert queues.rank(queues.ARRIVAL, weights=np.zeros((3, 2))).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown queue"):
        queues.rank("loudest", weights=np.zeros((1, 2)))


def _synthetic(n: int, labels: int, flipped_share: float, seed: int):
    """Out-of-fold weights of a decent model (the true label usually on top) and given labels with a share
    flipped to another label on purpose."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, labels, n)
    logits = rng.normal(0.0, 1.0, (n, labels))
    logits[np.arange(n), truth] += 2.5
    weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    flipped = rng.choice(n, int(n * flipped_share), replace=False)
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, labels, len(flipped))) % labels
    return given, weights, flipped


@pytest.mark.parametrize("labels", [2, 3])
def test_audit_finds_most_of_five_percent_flipped_labels_in_its_first_hundred(labels):
    given, weights, flipped = _synthetic(1000, labels, 0.05, seed=labels)
    checks = label_audit.audit(given, weights)
    assert sorted(c.position for c in checks) == list(range(1000))  # every image ranked once
    assert [c.rank for c in checks] == list(range(1000))
    first = {c.position for c in checks[:100]}
    found = len(first & set(flipped.tolist())) / len(flipped)
    assert found >= 0.8, f"only {found:.0%} of the flipped labels in the first 100"
    issues = [c for c in checks if c.is_issue]
    assert issues and all(c.is_issue for c in checks[:len(issues)])  # issues first
    flipped_check = next(c for c in checks if c.position == int(flipped[0]))
    assert flipped_check.given == int(given[flipped[0]])
    assert flipped_check.self_confidence == pytest.approx(weights[flipped[0], given[flipped[0]]])


def test_audit_clean_labels_flag_few():
    given, weights, _ = _synthetic(500, 2, 0.0, seed=7)
    issues = sum(c.is_issue for c in label_audit.audit(given, weights))
    assert issues < 50


def test_audit_refuses_what_it_cannot_judge():
    with pytest.raises(ValueError, match="at least"):
        label_audit.audit(np.zeros(3, dtype=int), np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="same label"):
        label_audit.audit(np.zeros(20, dtype=int), np.full((20, 2), 0.5))
    with pytest.raises(ValueError, match="label indices"):
        label_audit.audit(np.array([0, 1] * 10 + [5]), np.full((21, 2), 0.5))


def test_audit_with_a_label_nobody_used_and_unnormalised_weights():
    given, weights, flipped = _synthetic(300, 2, 0.05, seed=3)
    extra = np.column_stack([weights * 3.0, np.zeros(300)])  # a third label never given, rows not summing to 1
    checks = label_audit.audit(given, extra)
    assert {c.position for c in checks[:30]} & set(flipped.tolist())
    assert all(c.suggested in (0, 1) for c in checks)
