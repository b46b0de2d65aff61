"""The `driftline` command: help, usage errors, and the long-running commands as processes."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
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


def every_option(group=main, path=()):
    for name, command in getattr(group, "commands", {}).items():
        for param in command.params:
            if isinstance(param, click.Option):
                yield " ".join((*path, name)), param
        yield from every_option(command, (*path, name))


SETTING_OPTIONS = [(where, p) for where, p in every_option()
                   if (p.name in Settings.env_names() or p.envvar)]


def test_settings_flags_read_their_variable_through_click():
    assert len(SETTING_OPTIONS) > 20  # every command's --kafka-url, --redis-url, ...
    for where, option in SETTING_OPTIONS:
        env = option.envvar
        assert env in Settings.env_names().values(), (where, option.name)
        assert option.show_envvar, (where, option.name)
    # No hand-written "[env: ...]" left in any help text: click writes "[env var: ...]".
    for where, option in every_option():
        assert "[env:" not in (option.help or ""), (where, option.name)


@pytest.mark.parametrize("where,option", SETTING_OPTIONS,
                         ids=[f"{w} --{o.name}" for w, o in SETTING_OPTIONS])
def test_help_names_the_variable(where, option):
    result = CliRunner().invoke(main, [*where.split(), "--help"], terminal_width=200)
    assert f"env var: {option.envvar}" in result.output


def test_a_variable_reaches_the_settings_through_the_flag():
    result = CliRunner().invoke(main, ["config", "--json"], env={
        "DRIFTLINE_PARTITIONS": "3", "DRIFTLINE_LOG_LEVEL": "WARNING"})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["partitions"], shown["log_level"]) == (3, "warning")
    # A flag beats the variable; a bad variable is click's usage error naming it.
    result = CliRunner().invoke(main, ["config", "--json", "--partitions", "5"],
                                env={"DRIFTLINE_PARTITIONS": "3"})
    assert json.loads(result.output)["partitions"] == 5
    result = CliRunner().invoke(main, ["config"], env={"DRIFTLINE_PARTITIONS": "0"})
    assert result.exit_code == 2 and "DRIFTLINE_PARTITIONS" in result.output


def test_config_lists_every_setting_by_its_variable():
    result = CliRunner().invoke(main, ["config"], env={"DRIFTLINE_GROUP_ID": "g7"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.partition("=")[0] for line in lines] == list(Settings.env_names().values())
    assert "DRIFTLINE_GROUP_ID=g7" in lines


CLI = Path(__file__).resolve().parent.parent / "driftline" / "cli"


def test_the_cli_command_modules_import_only_common():
    """Only __init__ imports the command modules; they import _common and the rest of
    driftline, never each other or the package (the old cli.py <-> cli_ops.py cycle).
    Cycles and module sizes everywhere: tests/test_house.py."""
    siblings = {p.stem for p in CLI.glob("*.py")} - {"__init__"}
    for path in CLI.glob("*.py"):
        source = path.read_text()
        assert "noqa: E402" not in source, path.name
        if path.stem == "__init__":
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module == "_common", f"{path.name} imports .{node.module}"
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("driftline.cli"), path.name
    assert {"_common", "ops", "registry", "services", "embedded"} <= siblings


@pytest.mark.parametrize("module", ["driftline.cli._common", "driftline.cli.ops",
                                    "driftline.cli.registry", "driftline.cli.services",
                                    "driftline.cli.embedded"])
def test_each_command_module_imports_on_its_own(module):
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


def test_python_dash_m_and_the_console_script_are_the_same_command():
    by_module = subprocess.run([sys.executable, "-m", "driftline", "--help"],
                               capture_output=True, text=True)
    script = Path(sys.executable).parent / "driftline"
    by_script = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert by_module.returncode == by_script.returncode == 0
    assert by_module.stdout.splitlines()[1:] == by_script.stdout.splitlines()[1:]
    assert "worker" in by_module.stdout and "config" in by_module.stdout


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
    from kafka_io import label, prediction, produce, wait_for_events

    from driftline.kafka import wait_for_groups

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


def test_the_worker_takes_its_start_up_objects_out_of_full_collections():
    """What is alive once the app is built is frozen: a full collection no longer walks
    it (100-250 ms pauses of every stage at 9,000 pairs/s, bench/harness.py (c))."""
    import gc

    from driftline.worker import freeze_startup_objects

    assert gc.get_freeze_count() == 0
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
