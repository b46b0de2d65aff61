"""The guard every agent's batches run under (issue 29): an error that recurs is retried a
bounded number of times, then only the record that causes it is dead-lettered and the
rest go on; I/O errors are waited out; timers survive their errors. No services: the
agents under injected failures, on real Kafka, are in tests/test_poison.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import redis.exceptions
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from driftline.agents.guard import TROUBLES, Guard, guarded_timer, io_error
from driftline.errors import RegistryUnavailable


def events(n: int, partition: int = 0) -> list[SimpleNamespace]:
    return [SimpleNamespace(message=SimpleNamespace(topic="t", partition=partition + i % 2,
                                                    offset=i, key=None, value=b"%d" % i))
            for i in range(n)]


class Agent:
    """A handler that fails on the records in ``poison`` (or with ``error`` until it has
    been called ``heal_after`` times), remembering what it handled, in order."""

    def __init__(self, poison=(), error: BaseException | None = None, heal_after: int = 0):
        self.poison = set(poison)
        self.error = error
        self.heal_after = heal_after
        self.calls = 0
        self.failures = 0
        self.handled: list[int] = []
        self.dead: list[tuple[int, BaseException]] = []
        self.resets: list[set[int]] = []
        self.waits: list[float] = []

    async def handle(self, batch) -> None:
        self.calls += 1
        if self.error is not None and self.calls <= self.heal_after:
            self.failures += 1
            raise self.error
        if any(e.message.offset in self.poison for e in batch):
            self.failures += 1
            raise ValueError("cannot encode this one")
        self.handled.extend(e.message.offset for e in batch)

    async def dead_letter(self, event, exc) -> None:
        self.dead.append((event.message.offset, exc))

    async def reset(self, partitions) -> None:
        self.resets.append(set(partitions))

    async def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return False

    def guard(self, **kw) -> Guard:
        return Guard("driftline.test", self.handle, self.dead_letter, reset=self.reset, **kw)


def test_a_poison_record_is_dead_lettered_alone_and_the_others_go_on_in_order():
    agent = Agent(poison={5})
    before = TROUBLES.internal_errors["driftline.test"]
    assert asyncio.run(agent.guard().run(events(16), agent.wait))
    assert agent.handled == [o for o in range(16) if o != 5]
    [(offset, exc)] = agent.dead
    assert offset == 5 and isinstance(exc, ValueError)
    assert TROUBLES.internal_errors["driftline.test"] == before + 1
    # 3 tries of the batch, then halves: 2*log2(16) calls or so, not one per record.
    assert agent.calls <= 3 + 2 * 4 + 3 + 2
    # The state of the batch's partitions was dropped before every retry.
    assert agent.resets[0] == {0, 1} and len(agent.resets) == agent.failures


def test_two_poison_records_in_one_batch_both_go_and_nothing_else():
    agent = Agent(poison={0, 9})
    assert asyncio.run(agent.guard().run(events(10), agent.wait))
    assert [o for o, _ in agent.dead] == [0, 9]
    assert agent.handled == list(range(1, 9))


def test_an_error_that_heals_within_the_tries_dead_letters_nothing():
    agent = Agent(error=RuntimeError("flaky"), heal_after=2)
    assert asyncio.run(agent.guard().run(events(4), agent.wait))
    assert agent.dead == [] and agent.handled == [0, 1, 2, 3]
    assert len(agent.resets) == 2


@pytest.mark.parametrize("error", [KafkaTimeoutError(), ConnectionRefusedError(),
                                   redis.exceptions.ConnectionError("down"),
                                   RegistryUnavailable("redis down")],
                         ids=lambda e: type(e).__name__)
def test_io_errors_are_waited_out_however_long_without_a_dead_letter(error):
    agent = Agent(error=error, heal_after=12)
    assert asyncio.run(agent.guard(max_delay=2.0).run(events(3), agent.wait))
    assert agent.dead == [] and agent.handled == [0, 1, 2] and agent.resets == []
    assert agent.waits[:4] == [0.1, 0.2, 0.4, 0.8] and max(agent.waits) == 2.0


def test_a_record_the_broker_refuses_for_good_is_not_an_io_error():
    assert not io_error(MessageSizeTooLargeError())
    agent = Agent(error=MessageSizeTooLargeError(), heal_after=10**6)
    assert asyncio.run(agent.guard().run(events(2), agent.wait))
    assert [o for o, _ in agent.dead] == [0, 1]


def test_a_revoke_while_waiting_stops_without_a_dead_letter():
    agent = Agent(poison={1})

    async def revoked(seconds: float) -> bool:
        return True

    assert asyncio.run(agent.guard().run(events(4), revoked)) is False
    assert agent.dead == [] and agent.handled == []


def test_a_timer_that_raises_is_counted_and_ticks_again():
    ticks = []

    async def tick() -> None:
        ticks.append(1)
        if len(ticks) == 1:
            raise ValueError("bad state")

    before = TROUBLES.failures["driftline.test.timer"]
    run = guarded_timer("driftline.test.timer", tick)
    asyncio.run(run())
    asyncio.run(run())
    assert len(ticks) == 2 and TROUBLES.failures["driftline.test.timer"] == before + 1

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):  # stopping the worker still stops it
        asyncio.run(guarded_timer("t", cancelled)())


def test_a_dead_letter_kafka_refuses_is_counted_and_passed_over_other_records_raise():
    from driftline.agents.outbox import Outbox
    from driftline.models.wire.codec import Rejection

    sent = []

    async def send(topic, key, value, partition, headers=None):
        future = asyncio.get_running_loop().create_future()
        if topic == "dead" or value == b"too big":
            future.set_exception(MessageSizeTooLargeError())
        else:
            sent.append(value)
            future.set_result(SimpleNamespace(offset=len(sent) - 1))
        return future

    async def flush(out: Outbox) -> list[int]:
        return await out.flush(send)

    before = TROUBLES.unsent["dead"]
    out = Outbox()
    out.add("scored", b"k", b"pair", 0)
    out.dead_letter("dead", b"k" * 10_000, "predictions", 0, 7,
                    Rejection("invalid_json", "bad", b"{"), limit=1_000)
    assert asyncio.run(flush(out)) == [0, -1] and sent == [b"pair"]
    assert TROUBLES.unsent["dead"] == before + 1
    out.add("scored", b"k", b"too big", 0)
    with pytest.raises(MessageSizeTooLargeError):  # output that is not a dead letter
        asyncio.run(flush(out))


def test_a_dead_letter_fits_its_limit_key_and_value_whatever_its_input():
    from driftline.agents.outbox import Outbox
    from driftline.models.wire.codec import Rejection
    from driftline.models.wire.deadletter import MAX_KEY_BYTES

    out = Outbox()
    for raw in (b"\x00" * 50_000, "é".encode() * 50_000, b"x" * 50_000):
        out.dead_letter("dead", b"k" * 100_000, "predictions", 0, 1,
                        Rejection("unknown_field", "n" * 100_000, raw), limit=20_000)
    for record in out.records:
        assert len(record.value) <= 20_000 and len(record.key) == MAX_KEY_BYTES
