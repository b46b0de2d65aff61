"""The `driftline` command: help, usage errors, and the long-running commands as processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from driftline.cli import main
from driftline.settings import Settings


def every_command(group=main, path=()):
    yield [*path, "--help"]
    for name, command in getattr(group, "commands", {}).items():
        yield from every_command(command, (*path, name))


@pytest.mark.parametrize("args", list(every_command()), ids=lambda a: " ".join(a))
def test_help_everywhere(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_bad_flag_is_a_usage_error_with_the_fix():
    result = CliRunner().invoke(main, ["worker", "--partitions", "0"])
    assert result.exit_code == 2
    assert "--partitions" in result.output and "x>=1" in result.output


def test_unknown_agent_is_a_usage_error_that_lists_the_agents():
    result = CliRunner().invoke(main, ["worker", "--agents", "join,trainer"])
    assert result.exit_code == 2
    assert "trainer: choose from join, monitor, trigger" in result.output


def test_a_training_function_that_cannot_be_imported_stops_the_trainer(stack):
    result = CliRunner().invoke(main, ["trainer"], env={
        "DRIFTLINE_KAFKA_URL": stack.kafka_url, "DRIFTLINE_REDIS_URL": stack.redis_url,
        "DRIFTLINE_TOPIC_PREFIX": "cli-trainer.", "DRIFTLINE_TRAINER": "nowhere:fit"})
    assert result.exit_code == 2
    assert "DRIFTLINE_TRAINER='nowhere:fit' cannot be imported" in result.output


def test_bad_environment_is_a_usage_error_with_the_fix():
    result = CliRunner().invoke(main, ["worker"], env={"DRIFTLINE_KAFKA_URL": "http://k:9092"})
    assert result.exit_code == 2
    assert "use kafka://host:port" in result.output


def test_unknown_environment_variable_is_named():
    result = CliRunner().invoke(main, ["worker"], env={"DRIFTLINE_PARTITONS": "4"})
    assert result.exit_code == 2
    assert "DRIFTLINE_PARTITONS" in result.output


def _read_env_lines(proc: subprocess.Popen, count: int) -> dict[str, str]:
    env = {}
    while len(env) < count:
        line = proc.stdout.readline()
        assert line, "the command exited before printing its URLs"
        name, _, value = line.strip().partition("=")
        env[name] = value
    return env


@pytest.mark.integration
def test_stack_up_prints_urls_and_stops_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "driftline", "stack", "up",
                             "--kafka-port", "0", "--redis-port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        env = _read_env_lines(proc, 2)
        import redis

        assert redis.Redis.from_url(env["DRIFTLINE_REDIS_URL"]).ping()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.mark.integration
@pytest.mark.kafka
def test_up_runs_stack_and_worker_end_to_end(tmp_path, broker):
    from conftest import BROKERS
    from driftline.kafka import wait_for_groups
    from kafka_io import label, prediction, produce, wait_for_events

    with open(tmp_path / "up.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "driftline", "up", "--kafka-port", "0",
                                 "--redis-port", "0", "--partitions", "2",
                                 "--kafka", BROKERS[broker]],
                                stdout=subprocess.PIPE, stderr=log, text=True,
                                env={k: v for k, v in os.environ.items()
                                     if not k.startswith("DRIFTLINE_")})
    try:
        env = _read_env_lines(proc, 2)
        settings = Settings.from_env(env, partitions=2)
        # The worker creates the topics before it joins its group: producing earlier would
        # make Tansu auto-create them with 4 partitions, and the worker would refuse them.
        asyncio.run(wait_for_groups(settings, [settings.group_id], timeout=90))
        produce(settings, [("predictions", b"q1", prediction("q1", 4.0)),
                           ("labels", b"q1", label("q1", 1.0))])
        scored = wait_for_events(settings, "scored", 1, timeout=60, settle=0)
        assert [p["error"] for p in scored] == [3.0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0, (tmp_path / "up.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
