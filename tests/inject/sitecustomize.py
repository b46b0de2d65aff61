"""Deterministic failures injected into a real driftline process, for tests/test_poison.py.

On ``PYTHONPATH`` only for the processes that test starts (Python imports
``sitecustomize`` at start-up). With ``POISON_MARK`` set, each agent fails on every
record whose bytes hold the mark, as a bug would, every time:

* the join fails *after* adding the batch's events to its state (``PartitionJoin.add_events``),
  so the guard's retry must start from a state rebuilt from Kafka;
* the monitor, the trigger, delivery and the trainer fail as their batch begins.

Nothing of this is in driftline: the product has no test hooks.
"""

from __future__ import annotations

import os

MARK = os.environ.get("POISON_MARK", "").encode()


def _poisoned(messages) -> bool:
    return any(MARK in (e.message.value or b"") for e in messages)


def _wrap_process(cls) -> None:
    process = cls.process

    async def failing(self, messages):
        if _poisoned(messages):
            raise RuntimeError(f"injected failure in {cls.__name__}")
        await process(self, messages)

    cls.process = failing


def _install() -> None:
    from driftline.agents.delivery.agent import DeliveryAgent
    from driftline.agents.join.state import PartitionJoin
    from driftline.agents.monitor.agent import MonitorAgent
    from driftline.agents.retrain.trainer import Trainer
    from driftline.agents.retrain.trigger import TriggerAgent

    add_events = PartitionJoin.add_events

    def failing_add_events(self, events, now, *args):
        add_events(self, events, now, *args)  # the state changes first, then the bug
        if any(MARK.decode() in ev.prediction_id for ev in events):
            raise ValueError("injected failure in PartitionJoin.add_events")

    PartitionJoin.add_events = failing_add_events
    for cls in (MonitorAgent, TriggerAgent, DeliveryAgent, Trainer):
        _wrap_process(cls)


if MARK:
    _install()
