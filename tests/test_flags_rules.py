"""The flag rules without a database: image and chunk verdicts, the three rules, ranges, standing flags."""

from __future__ import annotations

from datetime import datetime

import pytest

from hydra_assets.db.models import FLAG_SCOPES, FLAG_VALUES
from hydra_assets.flags.rules import (
    BAD,
    FLAGS,
    GOOD,
    MEDIUM,
    NULL,
    SCOPES,
    FlagError,
    FlagRuleSpec,
    ImageEvidence,
    RunGroups,
    apply_rule,
    chunk_spans,
    image_verdict,
    run_flag_ranges,
    worst,
)
from hydra_assets.flags.standing import SignoffView, good_spans, parse_ranges, standing_flag


def good(plot_type: str, chunk: int) -> ImageEvidence:
    return ImageEvidence(plot_type, chunk, model_label="Good", judged=True, confirmed=True)


def bad(plot_type: str, chunk: int, **extra) -> ImageEvidence:
    return ImageEvidence(plot_type, chunk, model_label="Bad", judged=True, confirmed=True, model_bad=True, **extra)


def ranges_of(images, groups=None, rules=None, chunks=None):
    groups = RunGroups(groups or {"Tracker": ["A", "B"]}, {}, rules or {})
    out = run_flag_ranges(images, groups, chunks)
    return {key: [(r.first_chunk, r.last_chunk, r.flag) for r in value] for key, value in out.items()}, out


def test_vocabulary_matches_the_schema():
    assert FLAGS == FLAG_VALUES and SCOPES == FLAG_SCOPES


def test_worst_orders_bad_medium_good_null():
    assert worst([GOOD, NULL, MEDIUM]) == MEDIUM
    assert worst([GOOD, BAD, MEDIUM]) == BAD
    assert worst([NULL, GOOD]) == GOOD
    assert worst([]) == NULL


@pytest.mark.parametrize(("image", "flag"), [
    (ImageEvidence("A", 0, human_label="Bad", human_bad=True, model_label="Good", judged=True, confirmed=True), BAD),
    (ImageEvidence("A", 0, human_label="Good", model_label="Bad", judged=True, confirmed=True, model_bad=True,
                   alarms=((7, "bad"),)), GOOD),  # a person said Good: the model's alarm no longer counts
    (bad("A", 0), BAD),
    (ImageEvidence("A", 0, model_label="Good", judged=True, confirmed=True, alarms=((3, "reference"),)), BAD),
    (ImageEvidence("A", 0, model_label="Good", judged=True, confirmed=False), MEDIUM),
    (ImageEvidence("A", 0, model_label="Good", judged=True, confirmed=False, alarms=((4, "novel"),)), MEDIUM),
    (ImageEvidence("A", 0, model_label="Good", judged=True, confirmed=True, reference_flagged=True), MEDIUM),
    (good("A", 0), GOOD),
    (ImageEvidence("A", 0), NULL),  # no model: nothing judged it
    (ImageEvidence("A", 0, model_label="NoData", judged=True, confirmed=True), NULL),
    (ImageEvidence("A", 0, human_label="NoData", model_label="Bad", judged=True, confirmed=True, model_bad=True), NULL),
])
def test_image_verdict(image, flag):
    assert image_verdict(image, {"NoData"})[0] == flag


def test_novel_image_says_so():
    image = ImageEvidence("A", 0, model_label="Good", judged=True, confirmed=False, alarms=((4, "novel"),))
    assert image_verdict(image)[1] == "unlike the training data"


def test_run_that_went_bad_at_chunk_40_has_two_ranges_with_reasons():
    images = [good("B", c) for c in range(100)]
    images += [bad("A", c, alarms=((1000 + c, "bad"),)) if c >= 40 else good("A", c) for c in range(100)]
    simple, full = ranges_of(images)
    assert simple[("group", "Tracker")] == [(0, 39, GOOD), (40, 99, BAD)]
    reasons = full[("group", "Tracker")][1].reasons
    assert reasons[0]["plot_type"] == "A" and reasons[0]["chunks"] == [[40, 99]]
    assert reasons[0]["alarms"][:3] == [1040, 1041, 1042] and len(reasons[0]["alarms"]) == 20
    assert reasons[0]["more_alarms"] == 40
    assert "confirmed Bad" in reasons[0]["text"] or "alarm" in reasons[0]["text"]


def test_consecutive_rule_turns_short_bad_stretches_medium():
    bad_chunks = {5, 20, 21, 22, 23, 50, 51}
    images = [bad("A", c) if c in bad_chunks else good("A", c) for c in range(60)]
    rule = {("group", "Tracker"): FlagRuleSpec(rule="consecutive", consecutive=3)}
    simple, full = ranges_of(images, rules=rule)
    assert simple[("group", "Tracker")] == [
        (0, 4, GOOD), (5, 5, MEDIUM), (6, 19, GOOD), (20, 23, BAD), (24, 49, GOOD), (50, 51, MEDIUM), (52, 59, GOOD)]
    assert any("fewer than 3" in r.get("rule", "") for r in full[("group", "Tracker")][1].reasons)


def test_bad_share_rule_tolerates_a_few_bad_chunks_and_flags_the_run_above_the_limit():
    rule = FlagRuleSpec(rule="bad_share", bad_share=0.10, medium_share=0.05)
    groups = {("group", "Tracker"): rule}
    few = [bad("A", c) if c in (3, 4) else good("A", c) for c in range(100)]  # 2 %: tolerated, Good
    assert ranges_of(few, rules=groups)[0][("group", "Tracker")] == [(0, 99, GOOD)]
    some = [bad("A", c) if c < 7 else good("A", c) for c in range(100)]  # 7 %: Medium
    assert ranges_of(some, rules=groups)[0][("group", "Tracker")] == [(0, 99, MEDIUM)]
    many = [bad("A", c) if c < 20 else good("A", c) for c in range(100)]  # 20 %: Bad
    simple, full = ranges_of(many, rules=groups)
    assert simple[("group", "Tracker")] == [(0, 99, BAD)]
    assert any("20 of 100 chunks Bad" in r.get("rule", "") for r in full[("group", "Tracker")][0].reasons)


def test_ignored_nodata_labels_make_null_and_do_not_spoil_the_group():
    images = [ImageEvidence("A", c, model_label="NoData", judged=True, confirmed=True) for c in range(10)]
    images += [good("B", c) for c in range(5, 10)]
    rule = {("group", "Tracker"): FlagRuleSpec(ignore_labels=frozenset({"NoData"}))}
    assert ranges_of(images, rules=rule)[0][("group", "Tracker")] == [(0, 4, NULL), (5, 9, GOOD)]


def test_group_without_images_in_the_run_is_null_over_the_run():
    simple, full = ranges_of([good("A", c) for c in range(3)], groups={"Tracker": ["A"], "Calo": ["C"]})
    assert simple[("group", "Calo")] == [(0, 2, NULL)]
    assert full[("group", "Calo")][0].reasons[0]["text"].startswith("no images")


def test_no_images_no_ranges():
    assert run_flag_ranges([], RunGroups({"Tracker": ["A"]})) == {}


def test_super_group_is_the_worst_of_its_groups_then_its_rule():
    images = [good("A", c) for c in range(10)] + [bad("C", c) if c in (4, 5) else good("C", c) for c in range(10)]
    groups = RunGroups({"Tracker": ["A"], "Calo": ["C"]}, {"Detector": ["Tracker", "Calo"]},
                       {("super_group", "Detector"): FlagRuleSpec(rule="consecutive", consecutive=3)})
    out = run_flag_ranges(images, groups)
    assert [(r.first_chunk, r.last_chunk, r.flag) for r in out[("group", "Calo")]] == [
        (0, 3, GOOD), (4, 5, BAD), (6, 9, GOOD)]
    detector = out[("super_group", "Detector")]
    assert [(r.first_chunk, r.last_chunk, r.flag) for r in detector] == [(0, 3, GOOD), (4, 5, MEDIUM), (6, 9, GOOD)]
    assert detector[1].reasons[0]["group"] == "Calo"


def test_human_bad_label_beats_a_confirmed_good_model_in_the_chunk():
    images = [good("A", c) for c in range(5)]
    images.append(ImageEvidence("A", 2, human_label="Bad", human_bad=True, model_label="Good", judged=True,
                                confirmed=True))
    assert ranges_of(images)[0][("group", "Tracker")] == [(0, 1, GOOD), (2, 2, BAD), (3, 4, GOOD)]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rule": "majority"}, "unknown rule 'majority'"),
    ({"bad_share": 1.5}, "not a share between 0 and 1"),
    ({"consecutive": 0}, "at least 1"),
])
def test_bad_rules_are_refused_with_a_message(kwargs, message):
    with pytest.raises(FlagError, match=message):
        FlagRuleSpec(**kwargs)


def test_apply_rule_worst_of_changes_nothing():
    assert apply_rule([GOOD, BAD, NULL], FlagRuleSpec()) == ([GOOD, BAD, NULL], [None, None, None])


def test_chunk_spans():
    assert chunk_spans([9, 3, 4, 5]) == [[3, 5], [9, 9]]


@pytest.mark.parametrize(("text", "message"), [
    ("40-10", "reversed: write 10-40"),
    ("0-40,30-50", "0-40 and 30-50 overlap"),
    ("a-b", "not N or N-M"),
])
def test_bad_chunk_ranges_are_refused(text, message):
    with pytest.raises(FlagError, match=message):
        parse_ranges(text)


def test_parse_ranges():
    assert parse_ranges("0-39, 45,50-60") == [(0, 39), (45, 45), (50, 60)]


def test_override_stands_over_its_range_and_the_newest_signoff_wins():
    images = [bad("A", c) if c >= 40 else good("A", c) for c in range(100)]
    computed = run_flag_ranges(images, RunGroups({"Tracker": ["A"]}))[("group", "Tracker")]
    signoffs = [
        SignoffView(None, None, "confirm", BAD, "ann", datetime(2026, 12, 1, 8), "looked"),
        SignoffView(40, 49, "override", GOOD, "bob", datetime(2026, 12, 1, 9), "beam tuning, not the detector"),
    ]
    flag = standing_flag(7, "group", "Tracker", computed, signoffs)
    assert [(r.first_chunk, r.last_chunk, r.computed, r.standing, r.signed_by) for r in flag.ranges] == [
        (0, 39, GOOD, BAD, "ann"), (40, 49, BAD, GOOD, "bob"), (50, 99, BAD, BAD, "ann")]
    assert flag.computed == BAD and flag.standing == BAD and flag.signed_by == "bob" and flag.overridden
    assert good_spans(flag.ranges) == [[40, 49]]


def test_without_signoffs_the_computed_flag_stands():
    computed = run_flag_ranges([good("A", 0), good("A", 1), bad("A", 2)], RunGroups({"T": ["A"]}))[("group", "T")]
    flag = standing_flag(7, "group", "T", computed, [])
    assert [(r.first_chunk, r.last_chunk, r.standing) for r in flag.ranges] == [(0, 1, GOOD), (2, 2, BAD)]
    assert flag.signed_by is None and not flag.overridden
    assert good_spans(flag.ranges) == [[0, 1]]
    assert flag.reasons[0]["first_chunk"] == 2 and flag.reasons[0]["plot_type"] == "A"
