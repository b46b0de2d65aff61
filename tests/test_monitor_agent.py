"""The monitor agent's publishing, without a broker: what leaves for the alerts topic."""

from __future__ import annotations

import orjson
import pytest

from driftline.agents.monitor.agent import MonitorAgent
from driftline.agents.monitor.config import MonitorConfig
from driftline.agents.monitor.partition import PartitionMonitor
from driftline.agents.outbox import Outbox
from driftline.models.wire import ALERT
from driftline.settings import Settings


def alert(**change):
    return {"alert_id": "m.v1.concept_drift.1.firing", "model": "m", "version": 1,
            "kind": "concept_drift", "status": "firing", "severity": "critical",
            "detector": "adwin", "feature": None, "ts": 1.7e9,
            "metrics": {"rolling_mse": 2.0, "baseline_mse": 1.0, "n_scored": 10},
            "message": "drift", **change}


def test_alerts_are_validated_once_and_a_bad_one_is_dead_lettered_not_raised():
    settings = Settings(topic_prefix="t.")
    config = MonitorConfig.load(None)
    agent = MonitorAgent(settings, None, config)
    part = PartitionMonitor(config)
    out = Outbox()
    agent._publish(out, 3, part, [alert(), alert(),  # the same id twice: published once
                                  alert(alert_id="bad", kind="vibes")])
    [good, dead] = out.records
    assert (good.topic, good.partition, good.key) == ("t.alerts", 3, b"m")
    assert ALERT.decode(good.value)[0][0].alert_id == "m.v1.concept_drift.1.firing"
    # What the monitor wrote, as it wrote it: counts stay integers through validation.
    written = orjson.loads(good.value)
    assert written == {**alert(), "segment": None}
    assert type(written["metrics"]["n_scored"]) is int
    assert dead.topic == "t.deadletter"
    record = orjson.loads(dead.value)
    assert record["topic"] == "t.alerts" and record["error"].startswith(
        "internal_error: alert does not match the schema: kind: must be one of")
    assert orjson.loads(record["raw"])["alert_id"] == "bad"


def monitor_input(n: int = 6_000, chunk: int = 250, columnar: bool = False, stream_of=None):
    """monitor-input records as the join writes them: elements of
    ``chunk`` predictions or scored pairs, one per record, in runs of either kind
    (predictions run ahead of their pairs, as in the worker), with a concept drift
    halfway; plus one record that is not JSON and one element forwarded twice.
    ``columnar``: the elements hold columns (format 2) where the join would write them,
    else events (format 1). ``stream_of``: (predictions, pairs) instead of the default."""
    from simulate import stream

    from driftline.models.wire import PREDICTION, SCORED_PAIR, encode
    from driftline.models.wire.internal import PREDICTIONS, SCORED, columnar_element, element

    def element_of(kind, partition, offset, events):
        if columnar:
            structs = [(SCORED_PAIR if kind == SCORED else PREDICTION).decode_one(encode(e))
                       for e in events]
            models = {e.model for e in structs}
            value = (columnar_element(kind, partition, offset, structs[0].model, structs)
                     if len(models) == 1 else None)
            if value is not None:
                return value
        return element(kind, partition, offset, [encode(e) for e in events])

    predictions, pairs = stream_of or stream(n, seed=5, drift_at=n // 2)
    values = []
    for k, i in enumerate(range(0, n, chunk)):
        values.append(element_of(PREDICTIONS, 0, k, predictions[i:i + chunk]))
        if k % 3 == 2:  # the pairs come in bursts of three source messages
            for j in range(i - 2 * chunk, i + chunk, chunk):
                values.append(element_of(SCORED, 1, j // chunk, pairs[j:j + chunk]))
    values.insert(7, b"not json")
    values.insert(12, values[11])  # re-forwarded after a crash: dropped as a duplicate
    return [(offset, b"[" + v + b"]") for offset, v in enumerate(values)]


@pytest.mark.parametrize("columnar", [False, True], ids=["events", "columns"])
def test_a_run_of_one_kind_reaches_the_monitor_at_once_across_records_with_the_same_results(
        columnar):
    """Consecutive records of one kind go to the monitor as one call (its cost is per
    call), and give the alerts and numbers record-by-record application gives; a record
    that cannot be decoded is skipped alone and reported, whatever else came with it."""
    records = monitor_input(columnar=columnar)
    config = MonitorConfig.load(None)

    one_by_one = PartitionMonitor(config)
    alerts_one, failed_one = [], []
    for offset, value in records:
        try:
            alerts_one += one_by_one.apply(offset, value)
        except ValueError:
            failed_one.append(offset)

    calls: list[int] = []
    at_once = PartitionMonitor(config)
    name = "_feed_columns" if columnar else "_feed_events"
    feed = getattr(at_once, name)
    setattr(at_once, name, lambda kind, events: calls.append(len(events)) or feed(kind, events))
    alerts_all, failed = at_once.apply_records(records)

    assert failed_one == [7] and [f.offset for f in failed] == [7]
    assert failed[0].value == b"[not json]"
    assert max(calls) >= 3 * 250  # three records of pairs, one call
    assert len(calls) < len(records) - 2
    assert [a["alert_id"] for a in alerts_all] == [a["alert_id"] for a in alerts_one]
    assert "m.v1.concept_drift.1.firing" in {a["alert_id"] for a in alerts_all}
    assert at_once.duplicates == one_by_one.duplicates == 250
    mine, theirs = (p.monitor.versions[("m", 1)].report() for p in (at_once, one_by_one))
    assert (mine["n_scored"], mine["n_predictions"]) == (theirs["n_scored"],
                                                        theirs["n_predictions"]) == (6_000, 6_000)
    assert mine["rolling_mse"] == pytest.approx(theirs["rolling_mse"], rel=1e-9)


def test_a_record_that_cannot_be_applied_is_dead_lettered_alone_live_and_skipped_on_replay():
    settings = Settings(topic_prefix="t.")
    config = MonitorConfig.load(None)
    agent = MonitorAgent(settings, None, config)
    records = monitor_input(1_500)
    dead = {}
    for replay in (False, True):
        out = Outbox()
        part = PartitionMonitor(config)
        agent._apply(out, 2, part, records, replay=replay)
        dead[replay] = [r for r in out.records if r.topic == "t.deadletter"]
        assert part.monitor.versions[("m", 1)].report()["n_scored"] == 1_500
        assert part.next_offset == len(records)
    assert dead[True] == []
    [record] = dead[False]
    value = orjson.loads(record.value)
    assert (value["topic"], value["partition"], value["offset"]) == ("t.monitor-input", 2, 7)
    assert value["error"].startswith("internal_error") and value["raw"] == "[not json]"


def test_runs_the_monitor_raises_on_skip_their_records_once_and_the_rest_applies():
    """A bug in the monitor (here: any run of scored pairs raises) skips the records of
    that run, each named once even when it spans two runs; the predictions still apply."""
    from driftline.models.wire import encode
    from driftline.models.wire.internal import PREDICTIONS, SCORED, element

    part = PartitionMonitor(MonitorConfig.load(None))
    feed = part._feed

    def buggy(kind, events):
        if kind == SCORED:
            raise RuntimeError("a bug")
        return feed(kind, events)

    part._feed = buggy
    from simulate import stream
    predictions, pairs = stream(20, seed=1)
    both = b"[" + element(PREDICTIONS, 0, 1, [encode(p) for p in predictions[:10]]) + b"," + \
        element(SCORED, 1, 1, [encode(p) for p in pairs[:10]]) + b"]"
    scored = b"[" + element(SCORED, 1, 2, [encode(p) for p in pairs[10:]]) + b"," + \
        element(PREDICTIONS, 0, 2, [encode(p) for p in predictions[10:]]) + b"]"
    alerts, failed = part.apply_records([(0, both), (1, scored)])
    assert [(f.offset, str(f.error)) for f in failed] == [(0, "a bug"), (1, "a bug")]
    assert part.monitor.versions[("m", 1)].report()["n_predictions"] == 20
    assert part.next_offset == 2

    # Every run raises: each record spans two failing runs, and is named once.
    part = PartitionMonitor(MonitorConfig.load(None))
    part._feed = lambda kind, events: (_ for _ in ()).throw(RuntimeError("a bug"))
    alerts, failed = part.apply_records([(0, both), (1, scored)])
    assert alerts == [] and [f.offset for f in failed] == [0, 1]


def test_columns_on_monitor_input_give_what_the_events_give():
    """The join writes monitor-input as columns (format 2) where it can; the monitor fed
    them gives the alerts and reports the same events as dicts (format 1) give, with
    every rule on: segments, estimation, multivariate drift, two versions (one element
    mixes them), and elements whose events name different features (format 1 kept)."""
    import json

    from simulate import stream

    from driftline.models.wire.internal import decode_elements

    n = 6_000
    predictions, pairs = stream(n, seed=9, drift_at=n // 2)
    for k, (p, q) in enumerate(zip(predictions, pairs)):
        p["segment"] = q["segment"] = f"s{k % 4}"
        if k >= n // 3 or (1_000 <= k < 1_250 and k % 2):  # an element of both versions
            p["version"] = q["version"] = 2
        if 2_000 <= k < 2_010:  # one element whose events name different features
            for ev in (p, q):
                ev["features"] = {f: x for f, x in ev["features"].items() if f != "x1"}
    config = MonitorConfig.from_dict({"defaults": {
        "estimation": {"enabled": True}, "multivariate": {"enabled": True}, "segments": True}})
    results = {}
    for columnar in (False, True):
        records = monitor_input(n, columnar=columnar, stream_of=(predictions, pairs))
        formats = {item.v for _, value in records if value != b"[not json]"
                   for item in decode_elements(value)}
        assert formats == ({1, 2} if columnar else {1})
        part = PartitionMonitor(config)
        alerts, failed = part.apply_records(records)
        assert [f.offset for f in failed] == [7]
        reports = {key: json.dumps(vm.report(), sort_keys=True, default=str)
                   for key, vm in part.monitor.versions.items()}
        results[columnar] = ([a["alert_id"] for a in alerts], reports)
    (alerts_events, reports_events), (alerts_columns, reports_columns) = results.values()
    assert set(reports_events) == {("m", 1), ("m", 2)}
    assert {"m.v2.concept_drift.1.firing", "m.v2.s:s2.concept_drift.1.firing"} <= set(
        alerts_events)
    assert alerts_columns == alerts_events
    assert reports_columns == reports_events


def test_a_columnar_element_whose_arrays_disagree_is_skipped_alone():
    """Columns of the wrong length (bytes driftline did not write) are refused when the
    record is decoded: that record is reported, the next one applies."""
    from driftline.models.wire import PREDICTION, encode
    from driftline.models.wire.internal import PREDICTIONS, columnar_element

    events = [PREDICTION.decode_one(encode({"prediction_id": str(i), "model": "m",
                                            "version": 1, "prediction": 1.0, "ts": 1.0,
                                            "features": {"a": 1.0}})) for i in range(8)]
    good = columnar_element(PREDICTIONS, 0, 0, "m", events)
    assert good is not None
    short = orjson.loads(good)
    short["c"]["y"] = short["c"]["y"][:8]  # 6 bytes of a prediction's 8, in base64
    part = PartitionMonitor(MonitorConfig())
    _, failed = part.apply_records([(0, b"[" + orjson.dumps(short) + b"]"),
                                    (1, b"[" + columnar_element(PREDICTIONS, 0, 1, "m",
                                                                events) + b"]")])
    assert [f.offset for f in failed] == [0]
    assert "'y' holds 6 bytes, not 64" in str(failed[0].error)
    assert part.monitor.versions[("m", 1)].report()["n_predictions"] == 8


def test_an_element_of_several_messages_applies_only_what_a_redelivery_adds():
    """Format 3 (the predictions of consecutive small messages in one element): a batch
    re-delivered after a crash may start inside the last element applied and end past
    it; the monitor applies exactly the events after the last offset it applied, and
    ends where the same messages applied once each leave it."""
    import json

    from simulate import stream

    from driftline.agents.routing import predictions_elements
    from driftline.models.wire import PREDICTION, encode
    from driftline.models.wire.internal import PREDICTIONS, element

    predictions, _ = stream(600, seed=3, drift_at=300)
    structs = [PREDICTION.decode_one(encode(p)) for p in predictions]

    def batch(first, end):  # single-event messages first..end-1 of source partition 0
        [value] = predictions_elements(0, [(o, 300, [structs[o]]) for o in range(first, end)])
        return b"[" + value + b"]"

    part = PartitionMonitor(MonitorConfig())
    # 0-199, then 100-399 again from 100 (a crash before the commit), 150-250 (all seen
    # already), then 400-599.
    _, failed = part.apply_records([(0, batch(0, 200)), (1, batch(100, 400)),
                                    (2, batch(150, 251)), (3, batch(400, 600))])
    assert not failed
    assert part.duplicates == 100 + 101
    once = PartitionMonitor(MonitorConfig())
    once.apply_records([(o, b"[" + element(PREDICTIONS, 0, o, [encode(predictions[o])]) + b"]")
                        for o in range(600)])
    report = part.monitor.versions[("m", 1)].report()
    assert report["n_predictions"] == 600
    assert json.dumps(report, sort_keys=True, default=str) == json.dumps(
        once.monitor.versions[("m", 1)].report(), sort_keys=True, default=str)


def test_a_spanning_element_whose_offsets_are_out_of_order_is_skipped_alone():
    from driftline.agents.routing import predictions_elements
    from driftline.models.wire import PREDICTION, encode

    events = [PREDICTION.decode_one(encode({"prediction_id": str(i), "model": "m",
                                            "version": 1, "prediction": 1.0, "ts": 1.0,
                                            "features": {"a": 1.0}})) for i in range(16)]
    [good] = predictions_elements(0, [(o, 100, [events[o]]) for o in range(8)])
    bad = orjson.loads(good)
    bad["s"] = [0, 6]  # the last event's offset is 7
    [later] = predictions_elements(0, [(o, 100, [events[o]]) for o in range(8, 16)])
    part = PartitionMonitor(MonitorConfig())
    _, failed = part.apply_records([(0, b"[" + orjson.dumps(bad) + b"]"),
                                    (1, b"[" + later + b"]")])
    assert [f.offset for f in failed] == [0]
    assert "source offsets are not in order" in str(failed[0].error)
    assert part.monitor.versions[("m", 1)].report()["n_predictions"] == 8
