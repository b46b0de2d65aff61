"""A service publishing to driftline with confluent-kafka (librdkafka).

    python client.py produce BOOTSTRAP PREFIX MODEL PAIRS PARTITIONS
    python client.py consume BOOTSTRAP TOPIC COUNT

tests/test_clients.py runs it; README "Publishing from your service" shows the part
between the readme markers. Only confluent-kafka and the standard library.
"""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer

# readme:start
# librdkafka's default partitioner hashes keys with CRC32; murmur2_random is Java's
# (murmur2), the one driftline's join places prediction_ids with.
producer = None


def connect(bootstrap):
    global producer
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "partitioner": "murmur2_random"})


def publish(topic, key, event):
    """One event or a JSON array of events, keyed by a prediction_id."""
    producer.produce(topic, key=key.encode(), value=json.dumps(event).encode())
    producer.poll(0)


def murmur2(data):
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2)."""
    m, length = 0x5BD1E995, len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little") * m & 0xFFFFFFFF
        k = (k ^ (k >> 24)) * m & 0xFFFFFFFF
        h = (h * m & 0xFFFFFFFF) ^ k
    tail = length - length % 4
    if length % 4:
        for shift, byte in reversed(list(enumerate(data[tail:]))):
            h ^= byte << (8 * shift)
        h = h * m & 0xFFFFFFFF
    h = (h ^ (h >> 13)) * m & 0xFFFFFFFF
    return h ^ (h >> 15)


def publish_batches(topic, events, partitions):
    """Events as JSON arrays, one per home partition, keyed by the first one's id."""
    groups = {}
    for event in events:
        home = (murmur2(event["prediction_id"].encode()) & 0x7FFFFFFF) % partitions
        groups.setdefault(home, []).append(event)
    for batch in groups.values():
        publish(topic, batch[0]["prediction_id"], batch)
# readme:end

MULTICLASS_PAIRS = 6


def produce(bootstrap, prefix, model, pairs, partitions):
    connect(bootstrap)
    predictions, labels = [], []
    for i in range(pairs):
        pid = f"{model}-{i}"
        p = {"prediction_id": pid, "model": model, "version": 1,
             "prediction": float(i % 5 + 1),
             "features": {"x": float(i), "country": ["DE", "FR", "NL"][i % 3],
                          "vip": i % 7 == 0, "age": None if i % 10 == 0 else float(i % 50)}}
        lab = {"prediction_id": pid, "label": 0.0}
        if i < pairs // 2:  # the first half one event a message, the rest in batches
            publish(prefix + "predictions", pid, p)
            publish(prefix + "labels", pid, lab)
        else:
            predictions.append(p)
            labels.append(lab)
    publish_batches(prefix + "predictions", predictions, partitions)
    publish_batches(prefix + "labels", labels, partitions)
    publish(prefix + "labels", f"{model}-bad", {"prediction_id": f"{model}-bad", "label": True})
    classes = ["cat", "dog", "owl"]  # a multiclass model: classes, with their probabilities
    for i in range(MULTICLASS_PAIRS):
        pid = f"{model}-mc-{i}"
        publish(prefix + "predictions", pid, {
            "prediction_id": pid, "model": f"{model}-mc", "version": 1,
            "prediction": classes[i % 3], "probabilities": {"cat": 0.5, "dog": 0.3, "owl": 0.2}})
        publish(prefix + "labels", pid, {"prediction_id": pid, "label": classes[(i + 1) % 3]})
    left = producer.flush(60)
    if left:
        raise SystemExit(f"error: {left} messages not delivered")


def consume(bootstrap, topic, count):
    # readme:alerts:start
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"pager-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen, deadline = 0, time.monotonic() + 90
    try:
        while seen < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            alert = json.loads(message.value())   # alert["status"], alert["severity"], ...
            print(json.dumps(alert), flush=True)
            seen += 1
    finally:
        consumer.close()
    # readme:alerts:end
    if seen < count:
        raise SystemExit(f"error: {seen} of {count} records in 90 s")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif len(sys.argv) == 5 and sys.argv[1] == "consume":
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
