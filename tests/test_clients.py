"""Real Kafka clients of other languages publishing to a real ``driftline worker``: Java
(kafka-clients), Go (franz-go), Node (kafkajs), librdkafka (confluent-kafka for Python,
and kcat). Each one publishes predictions and labels keyed by ``prediction_id``, half as
single events and half as JSON arrays grouped by home partition, plus one malformed label;
every pair must be scored exactly once, the malformed label must be dead-lettered with its
reason, every event driftline wrote must match ``driftline schema``, and the client reads
the alerts back from ``driftline.alerts``.

Each client is built once per session (Maven's ~/.m2, Go's module and build caches and
npm's cache keep repeat runs quick); a missing toolchain skips its client, saying why.
The sources are under tests/clients/, and README "Publishing from your service" quotes
them (checked below).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from conftest import namespace
from kafka_io import create_topics, read_all, read_events, wait_for_events

from driftline.kafka import partition_for
from driftline.models.wire import schema as ws
from driftline.models.wire import unbatch

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "tests" / "clients"
PAIRS = 200  # 100 single events and 100 in batches, a client
# A fixed, tiny baseline: the clients' errors (1..5) make a metric_threshold alert fire
# once the window of 50 is full and 20 pairs in a row were above it, so each client has
# alerts to read.
MONITOR_TOML = """\
[defaults]
baseline_mse = 0.01
window = 50
[defaults.threshold]
consecutive = 20
"""


def expected_features(i: int) -> dict:
    """The features every client sends with prediction i: a number, a category, a boolean
    and a missing value (null) every tenth."""
    return {"x": float(i), "country": ["DE", "FR", "NL"][i % 3], "vip": i % 7 == 0,
            "age": None if i % 10 == 0 else float(i % 50)}


CLASSES = ["cat", "dog", "owl"]
MULTICLASS_PAIRS = 6


def multiclass_pairs(model: str) -> list[tuple[str, dict, dict]]:
    """The multiclass model's pairs every client sends, one event a message: (id,
    prediction, label)."""
    return [(f"{model}-mc-{i}",
             {"prediction_id": f"{model}-mc-{i}", "model": f"{model}-mc", "version": 1,
              "prediction": CLASSES[i % 3], "probabilities": {"cat": 0.5, "dog": 0.3, "owl": 0.2}},
             {"prediction_id": f"{model}-mc-{i}", "label": CLASSES[(i + 1) % 3]})
            for i in range(MULTICLASS_PAIRS)]


def tool(name: str, *fallbacks: str) -> str:
    """The path of a toolchain program, or skip the test saying what is missing."""
    for candidate in (shutil.which(name), *fallbacks):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip(f"{name} is not installed (not on PATH): the {name} client needs it")


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{argv[:3]} exited {result.returncode}\n" \
                                   f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


# --- building each client once per session: the argv prefix that runs it -----------------

@pytest.fixture(scope="session")
def python_client() -> list[str]:
    pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed "
                                                  "(pip install 'driftline[test]')")
    return [sys.executable, str(CLIENTS / "python" / "client.py")]


@pytest.fixture(scope="session")
def java_client(tmp_path_factory) -> list[str]:
    java, javac, mvn = tool("java"), tool("javac"), tool("mvn")
    out = tmp_path_factory.mktemp("java-client")
    run([mvn, "-q", "-B", "-f", str(CLIENTS / "java" / "pom.xml"), "dependency:build-classpath",
         f"-Dmdep.outputFile={out / 'classpath.txt'}"])
    classpath = (out / "classpath.txt").read_text().strip()
    run([javac, "-d", str(out), "-cp", classpath, str(CLIENTS / "java" / "Client.java")])
    return [java, "-cp", f"{out}:{classpath}", "Client"]


@pytest.fixture(scope="session")
def go_client(tmp_path_factory) -> list[str]:
    go = tool("go", "/usr/local/go/bin/go")
    binary = tmp_path_factory.mktemp("go-client") / "client"
    run([go, "build", "-o", str(binary), "."], cwd=CLIENTS / "go")
    return [str(binary)]


@pytest.fixture(scope="session")
def node_client(tmp_path_factory) -> list[str]:
    node, npm = tool("node"), tool("npm")
    out = tmp_path_factory.mktemp("node-client")
    for name in ("package.json", "package-lock.json", "client.js"):
        shutil.copy(CLIENTS / "node" / name, out / name)
    run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=out)
    return [node, str(out / "client.js")]


@pytest.fixture(scope="session")
def kcat() -> str:
    return tool("kcat")


def kcat_client(kcat: str) -> Callable[..., None]:
    """kcat as a producer: the lines (key TAB JSON value) are prepared here, with the same
    murmur2 grouping the other clients do themselves."""
    def produce(bootstrap: str, prefix: str, model: str, pairs: int, partitions: int) -> None:
        lines: dict[str, list[str]] = {"predictions": [], "labels": []}
        batches: dict[str, dict[int, list[dict]]] = {"predictions": {}, "labels": {}}
        for i in range(pairs):
            pid = f"{model}-{i}"
            events = {"predictions": {"prediction_id": pid, "model": model, "version": 1,
                                      "prediction": float(i % 5 + 1),
                                      "features": expected_features(i)},
                      "labels": {"prediction_id": pid, "label": 0.0}}
            for topic, event in events.items():
                if i < pairs // 2:
                    lines[topic].append(f"{pid}\t{json.dumps(event)}")
                else:
                    home = partition_for(pid.encode(), partitions)
                    batches[topic].setdefault(home, []).append(event)
        for topic, groups in batches.items():
            lines[topic] += [f"{b[0]['prediction_id']}\t{json.dumps(b)}" for b in groups.values()]
        bad = {"prediction_id": f"{model}-bad", "label": True}
        lines["labels"].append(f"{model}-bad\t{json.dumps(bad)}")
        for pid, prediction, label in multiclass_pairs(model):
            lines["predictions"].append(f"{pid}\t{json.dumps(prediction)}")
            lines["labels"].append(f"{pid}\t{json.dumps(label)}")
        for topic, topic_lines in lines.items():
            run(kcat_produce_argv(kcat, bootstrap, prefix + topic),
                input="\n".join(topic_lines) + "\n")
    return produce


def kcat_produce_argv(kcat: str, bootstrap: str, topic: str) -> list[str]:
    # readme:kcat (the README's command, with the test's broker and topic)
    return [kcat, "-P", "-b", bootstrap, "-t", topic, "-K", "\t",
            "-X", "topic.partitioner=murmur2_random", "-X", "request.required.acks=-1"]


def kcat_consume_argv(kcat: str, bootstrap: str, topic: str, count: int) -> list[str]:
    return [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-c", str(count),
            "-f", "%s\n"]


# --- the contract every client is held to ------------------------------------------------

def check_client(stack, tmp_path, worker_factory, model: str,
                 produce: Callable[..., None], consume: Callable[[str, str, int], str]) -> None:
    (tmp_path / "monitor.toml").write_text(
        MONITOR_TOML + f'[models."{model}-mc"]\ntask = "multiclass"\n')
    settings = dataclasses.replace(namespace(stack),
                                   monitor_config=str(tmp_path / "monitor.toml"))
    create_topics(settings)
    worker = worker_factory(settings)
    started = time.monotonic()
    bootstrap = settings.bootstrap_servers[0]
    produce(bootstrap, settings.topic_prefix, model, PAIRS,
            settings.partitions)

    scored = wait_for_events(settings, "scored", PAIRS + MULTICLASS_PAIRS, timeout=120)
    # the multiclass model's pairs: classes and probabilities as sent, no error
    classes = {pid: (p, lab) for pid, p, lab in multiclass_pairs(model)}
    multiclass = [e for e in scored if e["model"] == f"{model}-mc"]
    assert sorted(e["prediction_id"] for e in multiclass) == sorted(classes), worker.log()
    assert all((e["prediction"], e["probabilities"], e["label"], e["error"]) == (
        classes[e["prediction_id"]][0]["prediction"],
        classes[e["prediction_id"]][0]["probabilities"],
        classes[e["prediction_id"]][1]["label"], None) for e in multiclass), multiclass[:2]
    scored = [e for e in scored if e["model"] == model]
    counts = Counter(e["prediction_id"] for e in scored)
    assert set(counts) == {f"{model}-{i}" for i in range(PAIRS)}, worker.log()
    assert [pid for pid, n in counts.items() if n != 1] == []  # exactly once
    # numbers, categories, booleans and nulls arrive as the client sent them
    wrong = [e["prediction_id"] for e in scored if e["features"] != expected_features(
        int(e["prediction_id"].rsplit("-", 1)[1]))]
    assert wrong == [], (len(wrong), wrong[:3])

    [dead] = [d for d in wait_for_events(settings, "deadletter", 1, settle=0)
              if f"{model}-bad" in d["raw"]]
    assert dead["topic"] == settings.topic("labels")
    assert dead["error"] == ("wrong_type: label: must be a finite number or a class (a string "
                             "of 1 to 256 characters), got bool")

    # Every event arrived on its home partition: the client's partitioner is murmur2, and
    # each batch was grouped by home partition (the join forwards an event that is not).
    for name in ("predictions", "labels"):
        for record in read_all(settings, name):
            homes = {partition_for(e["prediction_id"].encode(), settings.partitions)
                     for e in unbatch(record.value)}
            assert homes == {record.partition}, (name, record.key, homes)

    alerts = wait_for_events(settings, "alerts", 1, timeout=60, settle=0)
    assert any(a["kind"] == "metric_threshold" and a["model"] == model for a in alerts)
    # The client reads them from driftline.alerts (from the beginning, a group of its own).
    count = len(read_all(settings, "alerts"))
    out = consume(bootstrap, settings.topic("alerts"), count)
    read_ids = [json.loads(line)["alert_id"] for line in out.splitlines() if line.strip()]
    assert len(read_ids) == count
    assert set(read_ids) <= {a["alert_id"] for a in read_events(settings, "alerts")}

    # What the real worker wrote matches the published schema (whole messages, arrays too).
    # the multiclass model's pairs fit its task: none was refused
    assert [d for d in read_events(settings, "deadletter")
            if d["error"].startswith("refused_pair")] == []
    for name in ("scored", "deadletter", "alerts"):
        validator = jsonschema.Draft202012Validator(ws.message_schema(ws.TOPICS[name]))
        for record in read_all(settings, name):
            errors = [e.message for e in validator.iter_errors(json.loads(record.value))]
            assert errors == [], (name, record.value[:300])
    print(f"\n{model}: {PAIRS} pairs scored once, 1 dead letter, {count} alerts read back, "
          f"{time.monotonic() - started:.1f} s from the first send")


def argv_client(argv: list[str]):
    def produce(bootstrap, prefix, model, pairs, partitions):
        run([*argv, "produce", bootstrap, prefix, model, str(pairs), str(partitions)])

    def consume(bootstrap, topic, count):
        return run([*argv, "consume", bootstrap, topic, str(count)]).stdout
    return produce, consume


@pytest.mark.integration
@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("client", ["python", "java", "go", "node"])
def test_client_publishes_and_reads_alerts(client, request, stack, tmp_path, worker_factory):
    argv = request.getfixturevalue(f"{client}_client")
    check_client(stack, tmp_path, worker_factory, client, *argv_client(argv))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.kafka_only
def test_kcat_publishes_and_reads_alerts(kcat, stack, tmp_path, worker_factory):
    def consume(bootstrap, topic, count):
        return run(kcat_consume_argv(kcat, bootstrap, topic, count)).stdout
    check_client(stack, tmp_path, worker_factory, "kcat", kcat_client(kcat), consume)


@pytest.mark.integration
@pytest.mark.tansu_only
def test_debian_kcat_cannot_talk_to_tansu(kcat, stack):
    """Documented in README "Publishing from your service": librdkafka 2.0.2's
    ApiVersionRequest is refused by Tansu, so kcat 1.7.1 gets no metadata at all."""
    version = subprocess.run([kcat, "-V"], capture_output=True, text=True).stdout
    if "librdkafka 2.0." not in version:
        pytest.skip(f"about Debian's kcat (librdkafka 2.0.x); this one is: {version[:80]}")
    bootstrap = stack.kafka_url.removeprefix("kafka://")
    for extra in ([], ["-X", "api.version.request=false"]):  # the setting changes nothing
        result = subprocess.run([kcat, "-L", "-b", bootstrap, "-m", "5", *extra],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "ApiVersionRequest failed: Local: Read underflow: probably due to broker " \
               "version < 0.10" in result.stderr, result.stderr
        assert "ERROR: Failed to acquire metadata" in result.stderr


def quoted(path: Path, start: str, end: str) -> str:
    text = path.read_text()
    return text[text.index(start) + len(start):text.index(end)].strip("\n")


@pytest.mark.parametrize(("source", "marker"), [
    ("python/client.py", "readme"), ("java/Client.java", "readme"), ("go/main.go", "readme"),
    ("node/client.js", "readme"), ("python/client.py", "readme:alerts"),
    ("java/Client.java", "readme:alerts"), ("go/main.go", "readme:alerts"),
    ("node/client.js", "readme:alerts")])
def test_readme_quotes_the_client_sources_the_tests_run(source, marker):
    comment = "#" if source.endswith(".py") else "//"
    code = quoted(CLIENTS / source, f"{comment} {marker}:start\n", f"{comment} {marker}:end")
    # Quoted in "Publishing from your service": docs/how-to/publish.md (README.md until
    # issue 31 moved it); every page that quotes it must quote it as it is.
    pages = [p for p in [ROOT / "docs" / "how-to" / "publish.md", ROOT / "README.md"]
             if p.exists() and "**Three rules for every client.**" in p.read_text()]
    assert pages, "no page quotes the client sources"
    for page in pages:
        assert code in page.read_text(), f"{page.name} does not show {source} {marker} as it is"
