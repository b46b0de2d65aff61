"""A model's most recent scored pairs, read back from Kafka for training.

The training data is not copied anywhere: ``monitor-input`` already holds every
scored pair of a model, in the monitor's order, on the model's partition, and is
kept with unlimited retention (the monitor replays it). A retrain reads that
partition *backwards* from its end, in chunks of records that double in size,
until it has ``max_pairs`` pairs of the model or reaches pairs labelled before
``since`` (the drift point). The bound is ``DRIFTLINE_TRAINING_MAX_PAIRS``; the
cost of a read is about the model's pairs in the window plus whatever else
shares its partition, never the whole history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from driftline.kafka import opened_reader, partition_for, read_partition, true_end_offset
from driftline.models.wire.internal import SCORED, decode_elements
from driftline.settings import Settings


@dataclass
class TrainingWindow:
    pairs: list[dict[str, Any]]   # oldest first, one per prediction_id
    partition: int                # of monitor-input
    first_offset: int             # the records read: [first_offset, end_offset)
    end_offset: int
    older_skipped: int = 0        # pairs of the model labelled before ``since``
    duplicates: int = 0
    sources: dict[str, int] = field(default_factory=dict)  # pairs per version

    def describe(self, topic: str) -> dict[str, Any]:
        ts = [p["label_ts"] for p in self.pairs if p.get("label_ts") is not None]
        return {"topic": topic, "partition": self.partition,
                "offsets": [self.first_offset, self.end_offset], "pairs": len(self.pairs),
                "first_label_ts": min(ts, default=None), "last_label_ts": max(ts, default=None),
                "pairs_by_version": self.sources}


async def recent_pairs(settings: Settings, model: str, *, since: float | None = None,
                       max_pairs: int | None = None, first_chunk: int = 32) -> TrainingWindow:
    """The model's most recent scored pairs labelled at or after ``since`` (all of its
    versions: a label is the truth whichever version predicted), at most ``max_pairs``."""
    max_pairs = max_pairs or settings.training_max_pairs
    topic = settings.topic("monitor_input")
    q = partition_for(model.encode(), settings.partitions)
    async with opened_reader(settings) as consumer:
        tp = TopicPartition(topic, q)
        consumer.assign([tp])
        end = await true_end_offset(consumer, tp)
        chunks: list[list[dict[str, Any]]] = []
        total = older = 0
        hi, step = end, first_chunk
        while hi > 0 and total < max_pairs and not older:
            lo = max(0, hi - step)
            chunk: list[dict[str, Any]] = []
            async for records in read_partition(consumer, topic, q, lo, end=hi):
                for record in records:
                    for element in decode_elements(record.value):
                        if element.k != SCORED:
                            continue
                        for pair in element.events():
                            if pair["model"] != model:
                                continue
                            label_ts = pair.get("label_ts")
                            if since is not None and label_ts is not None and label_ts < since:
                                older += 1
                            else:
                                chunk.append(pair)
            chunks.append(chunk)
            total += len(chunk)
            hi, step = lo, min(step * 2, 4096)
    window = TrainingWindow([], q, hi, end, older_skipped=older)
    seen: set[str] = set()
    for chunk in reversed(chunks):
        for pair in chunk:
            if pair["prediction_id"] in seen:  # re-forwarded after a crash
                window.duplicates += 1
                continue
            seen.add(pair["prediction_id"])
            window.pairs.append(pair)
    del window.pairs[:-max_pairs]
    for pair in window.pairs:
        key = str(pair.get("version"))
        window.sources[key] = window.sources.get(key, 0) + 1
    return window
