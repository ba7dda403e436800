"""The run's figures as typed records (kodcode_async/stats.py): how two records add up, how
stats.json reads back (also an older or torn one), and the timeline's sampling."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from kodcode_async import stats
from kodcode_async.stats import (
    FilterCounts,
    LLMCounts,
    QuestionCounts,
    SandboxCounts,
    Snapshot,
    StageCounts,
    Stats,
    SubsetCounts,
    TagCounts,
    Timeline,
    add,
    add_counts,
    add_stages,
    read_stats,
)


def test_counters_add_numbers_merge_nested_keep_the_first_list_and_string_and_hold_flags_only_when_both_do():
    into = {"n": 1, "f": 0.25, "nested": {"a": 1}, "names": ["x"], "kind": "map", "ok": True}
    add_counts(into, {"n": 2, "f": 0.1239, "nested": {"a": 2, "b": 3}, "names": ["y"], "kind": "stream", "ok": False,
                      "new": 4, "new_list": [1], "new_text": "t"})
    assert into == {"n": 3, "f": 0.374, "nested": {"a": 3, "b": 3}, "names": ["x"], "kind": "map", "ok": False,
                    "new": 4, "new_list": [1], "new_text": "t"}
    flags = {"off": False}
    add_counts(flags, {"ok": True, "off": True, "fresh": {"x": 1}})
    assert flags == {"ok": True, "off": False, "fresh": {"x": 1}}


def test_records_add_field_by_field_and_what_is_added_in_is_never_changed_afterwards():
    a = LLMCounts(requests=2, errors={"http_500": 1}, limit=8, parse_errors=1, style_checks={"parse": 1})
    b = LLMCounts(requests=3, replayed=4, errors={"http_500": 2, "timeout": 1}, in_flight=2, limit=8,
                  completion_tokens=10, style_checks={"signature": 2})
    add(a, b)
    assert a == LLMCounts(requests=5, replayed=4, errors={"http_500": 3, "timeout": 1}, in_flight=2, limit=16,
                          completion_tokens=10, parse_errors=1, style_checks={"parse": 1, "signature": 2})
    box = SandboxCounts()
    add(box, SandboxCounts(jobs=2, statuses={"pass": 2}, isolation="bwrap"))
    add(box, SandboxCounts(jobs=1, statuses={"fail": 1}, isolation="none", restarts=1))
    assert box == SandboxCounts(jobs=3, statuses={"pass": 2, "fail": 1}, isolation="bwrap", restarts=1)
    q = QuestionCounts()
    first = QuestionCounts(per_subset={"a": SubsetCounts(questions=2, rejected={"empty": 1})},
                           filter=FilterCounts(categories={"math": 1}, keep=["math"]), tags={"judge": TagCounts()})
    add(q, first)
    add(q, QuestionCounts(per_subset={"a": SubsetCounts(kept=2), "b": SubsetCounts(kept=1)}, dedup_batches=3,
                          filter=FilterCounts(categories={"math": 2}, invalid_answers=1, keep=["other"]),
                          tags={"judge": TagCounts(invalid_answers=1)}))
    assert q == QuestionCounts(per_subset={"a": SubsetCounts(questions=2, rejected={"empty": 1}, kept=2),
                                           "b": SubsetCounts(kept=1)},
                               filter=FilterCounts(categories={"math": 3}, invalid_answers=1, keep=["math"]),
                               dedup_batches=3, tags={"judge": TagCounts(invalid_answers=1)})
    assert first == QuestionCounts(per_subset={"a": SubsetCounts(questions=2, rejected={"empty": 1})},
                                   filter=FilterCounts(categories={"math": 1}, keep=["math"]),
                                   tags={"judge": TagCounts()})
    assert q.filter.keep is not first.filter.keep and q.filter is not first.filter
    kept = FilterCounts()
    add(kept, FilterCounts(keep=["math"]))
    kept.keep.append("x")
    assert first.filter.keep == ["math"]
    busy = StageCounts(name="s", busy_s=0.0004)
    add(busy, StageCounts(name="s", busy_s=0.0004))
    assert busy.busy_s == 0.001  # sums are kept to the millisecond


def test_a_count_that_is_not_there_leaves_the_sum_as_it_is():
    q = QuestionCounts(dedup_batches=2, per_subset={"a": SubsetCounts(duplicates=1)})
    add(q, QuestionCounts())
    assert q == QuestionCounts(dedup_batches=2, per_subset={"a": SubsetCounts(duplicates=1)})
    assert msgspec.to_builtins(QuestionCounts()) == {}  # a section is written only when its stage ran


def test_stage_counts_add_by_name_keep_the_order_met_and_count_what_left_the_stage():
    into = [StageCounts(name="solutions", kind="map", items_in=2, items_out=1, dropped={"fail": 1}, busy_s=0.5)]
    more = [StageCounts(name="style", kind="map", items_in=1),
            StageCounts(name="solutions", kind="map", items_in=3, items_out=2, dropped={"fail": 1}, busy_s=0.25)]
    add_stages(into, more)
    assert into == [StageCounts(name="solutions", kind="map", items_in=5, items_out=3, dropped={"fail": 2},
                                busy_s=0.75),
                    StageCounts(name="style", kind="map", items_in=1)]
    assert into[0].done == 5 and into[1].done == 0
    into[1].items_in += 1
    into[1].dropped["x"] = 1
    assert more[0].items_in == 1 and more[0].dropped == {}  # a stage met first is copied, not shared


def test_stats_json_reads_back_typed_also_from_an_older_run_and_a_bad_file_is_a_value_error():
    full = Stats(questions=3, verified=2, pass_at_k={"s": {"1": stats.PassAtK(2, 0.6667)}},
                 stages=[StageCounts(name="solutions", items_in=3)],
                 question_synthesis=QuestionCounts(per_subset={"s": SubsetCounts(questions=3, rejected={})}),
                 llm=LLMCounts(requests=9), sandbox=SandboxCounts(isolation="bwrap"))
    data = orjson.dumps(full.to_json())
    assert read_stats(data) == full
    on_disk = orjson.loads(data)
    assert "checkpoint" not in on_disk and "executor" not in on_disk
    assert on_disk["question_synthesis"] == {"per_subset": {"s": {"questions": 3, "rejected": {}}}}
    assert "question_synthesis" not in Stats().to_json()
    old = read_stats(b'{"questions": 1, "pass_at_k": {}, "llm": {"requests": 2}, "a_key_of_the_future": 1}')
    assert (old.questions, old.llm.requests, old.sandbox, old.timeline) == (1, 2, SandboxCounts(), [])
    for bad in (b'{"questions": 1, "llm": {"requ', b'{"questions": "many"}', b"[1, 2]"):
        with pytest.raises(ValueError, match="not a run's stats"):
            read_stats(bad)


def test_the_timeline_samples_items_per_second_since_the_last_sample_and_halves_when_full(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(stats.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(stats, "TIMELINE_MAX", 4)
    timeline = Timeline()

    def snap(out: int) -> Snapshot:
        return Snapshot(stages=[StageCounts(name="s", items_out=out, dropped={"fail": out})],
                        llm=LLMCounts(in_flight=3, limit=8), sandbox=SandboxCounts(busy=1, workers=2))

    timeline.maybe_sample(snap(0))  # the first is taken at once
    clock[0] += 1.0
    timeline.maybe_sample(snap(5))  # too soon: TIMELINE_S has not passed
    assert len(timeline.samples) == 1
    clock[0] += 1.0
    timeline.maybe_sample(snap(5))
    first, second = timeline.samples
    assert (first.t, second.t) == (0.0, 2.0)
    assert second.items_per_s == {"s": 5.0}  # 10 left the stage (5 out, 5 dropped) in 2 s
    assert (second.llm_in_flight, second.llm_limit, second.sandbox_busy, second.sandbox_workers) == (3, 8, 1, 2)
    assert 0.0 <= second.cpu_pct <= 100.0
    clock[0] += 3.0
    timeline.sample(snap(8))  # 6 more in 3 s
    assert timeline.samples[-1].items_per_s == {"s": 2.0} and timeline.samples[-1].t == 5.0
    clock[0] += 0.3456
    timeline.sample(snap(9))
    assert timeline.samples[-1].t == 5.35 and timeline.samples[-1].items_per_s == {"s": 5.79}  # 2 in 0.3456 s
    assert len(timeline.samples) == 4 and timeline.every == stats.TIMELINE_S  # full, not over
    clock[0] += 2.0
    timeline.sample(snap(9))
    assert [s.t for s in timeline.samples] == [0.0, 5.0, 7.35] and timeline.every == 2 * stats.TIMELINE_S
    clock[0] += 2.0
    timeline.maybe_sample(snap(9))  # sampled half as often now
    assert len(timeline.samples) == 3
    clock[0] += 2.0
    timeline.maybe_sample(snap(9))
    assert len(timeline.samples) == 4 and timeline.samples[-1].items_per_s == {"s": 0.0}
