"""The keys' two hashes of one batch (driftline.keyhash): Kafka's murmur2 picks what the
key-by-key partitioner does (tests/test_clients.py checks that one against the Java
client's on the broker), and MurmurHash64A is the reference C code's, whose values
join-state snapshots keep: they may never change."""

from __future__ import annotations

import random

import pytest

from driftline.kafka import partition_for
from driftline.keyhash import id_hash, key_hashes

# MurmurHash64A(key, len, seed 0), printed by Austin Appleby's C code (MurmurHash2.cpp)
# compiled with gcc on x86-64.
REFERENCE = {
    b"": 0,
    b"a": 510903276987443985,
    b"b0": 15891990269507976644,
    b"abcdefg": 2601573339036254301,
    b"abcdefgh": 12671724553504926360,
    b"abcdefghi": 14535887056033573570,
    b"prediction-0000001": 2568018865379445123,
    b"7f3c2a9e-1b4d-4c8a-9e2f-0a1b2c3d4e5f": 16697977348390900933,
    "prédiction-é".encode(): 14785203184593932979,
}


def test_the_64_bit_hash_is_the_reference_murmurhash64a():
    assert {key: id_hash(key) for key in REFERENCE} == REFERENCE
    keys = [key for key in REFERENCE for _ in range(20)]  # each length in numpy too
    assert key_hashes(keys, None)[1].tolist() == [REFERENCE[k] for k in keys]


@pytest.mark.parametrize("partitions", [1, 8, 13])
def test_a_batch_hashes_as_each_key_alone(partitions):
    rng = random.Random(partitions)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) for _ in range(3000)]
    keys += [f"b{i}".encode() for i in range(3000)]  # many of one length, some of another
    keys += ["prédiction-é".encode(), b"", b"a" * 1000]
    rng.shuffle(keys)
    homes, ids = key_hashes(keys, partitions)
    assert homes == [partition_for(k, partitions) for k in keys]
    assert ids.tolist() == [id_hash(k) for k in keys]
    same = [f"id-{i:06d}".encode() for i in range(500)]  # one length: no grouping
    homes, ids = key_hashes(same, partitions)
    assert homes == [partition_for(k, partitions) for k in same]
    assert ids.tolist() == [id_hash(k) for k in same]
    assert key_hashes([], partitions)[0] == [] and len(key_hashes([], partitions)[1]) == 0
    assert key_hashes(same, None)[0] == []
