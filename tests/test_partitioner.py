"""The join's vectorised murmur2 picks what the key-by-key one does (which
tests/test_clients.py checks against the Java client's partitioner on the broker)."""

from __future__ import annotations

import random

import pytest

from driftline.kafka import partition_for, partitions_for


@pytest.mark.parametrize("partitions", [1, 8, 13])
def test_partitions_for_a_batch_equals_partition_for_each_key(partitions):
    rng = random.Random(partitions)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) for _ in range(3000)]
    keys += [f"b{i}".encode() for i in range(3000)]              # many of one length
    keys += ["prédiction-é".encode(), b"", b"a" * 1000]
    rng.shuffle(keys)
    assert partitions_for(keys, partitions) == [partition_for(k, partitions) for k in keys]
    assert partitions_for([], partitions) == []
