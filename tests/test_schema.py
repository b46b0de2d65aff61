"""The JSON Schemas of the public events (``driftline schema``) against the decoder they
are generated from, the README's examples, and the CLI. Events a real worker wrote are
checked against them in tests/test_clients.py."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson
import pytest
from click.testing import CliRunner
from test_package import readme_blocks

from driftline.cli import main
from driftline.models.wire import schema as ws

VALIDATORS = {name: jsonschema.Draft202012Validator(ws.message_schema(name))
              for name in ws.SCHEMAS}


def schema_errors(name: str, value: object) -> list[str]:
    return [e.message for e in VALIDATORS[name].iter_errors(value)]


@pytest.mark.parametrize("name", sorted(ws.SCHEMAS))
def test_every_schema_is_a_valid_draft_2020_12_schema(name):
    jsonschema.Draft202012Validator.check_schema(ws.schema(name))
    jsonschema.Draft202012Validator.check_schema(ws.message_schema(name))
    assert ws.schema(name)["additionalProperties"] is False  # unknown fields are refused


def test_readme_event_examples_validate_against_the_schemas():
    blocks = readme_blocks("<!-- event-examples -->", "**Dead letters.**")
    names = ["prediction", "label", "scored-pair", "alert", "retrain-request", "model-event"]
    assert len(blocks) == len(names)
    for block, name in zip(blocks, names):
        assert schema_errors(name, json.loads(block)) == [], name


P = {"prediction_id": "p1", "model": "houses", "prediction": 1.5}

# (event name, value): the schema and driftline's decoder agree on each.
AGREED = [
    pytest.param("prediction", P, True, id="prediction:minimal"),
    pytest.param("prediction", [P, {**P, "prediction_id": "p2", "version": 3}], True,
                 id="prediction:batch"),
    pytest.param("prediction", {**P, "features": None, "segment": "fr"}, True,
                 id="prediction:null-features"),
    pytest.param("prediction", [], False, id="prediction:empty-batch"),
    pytest.param("prediction", {**P, "extra": 1}, False, id="prediction:unknown-field"),
    pytest.param("prediction", {**P, "model": "a b"}, False, id="prediction:bad-model"),
    pytest.param("prediction", {**P, "prediction_id": ""}, False, id="prediction:empty-id"),
    pytest.param("prediction", {**P, "prediction": "1.5"}, True, id="prediction:class"),
    pytest.param("prediction", {**P, "prediction": ""}, False, id="prediction:empty-class"),
    pytest.param("prediction", {**P, "prediction": "c", "probabilities": {"c": 1.5}}, False,
                 id="prediction:probability-above-1"),
    pytest.param("prediction", {**P, "prediction": True}, False, id="prediction:bool"),
    pytest.param("prediction", {**P, "version": 0}, False, id="prediction:version-0"),
    pytest.param("prediction", {**P, "ts": 1764300000000}, False, id="prediction:ts-millis"),
    pytest.param("prediction", {**P, "features": {"": 1}}, False, id="prediction:feature-name"),
    pytest.param("label", {"prediction_id": "p1", "label": 0}, True, id="label:int-label"),
    pytest.param("label", {"prediction_id": "p1"}, False, id="label:missing"),
    pytest.param("alert", {"alert_id": "a", "model": "m", "version": 1, "kind": "data_drift",
                           "status": "firing", "severity": "warning", "detector": "psi",
                           "feature": "x", "ts": 1.0, "metrics": {}, "message": "m",
                           "attribution": [{"feature": "x", "share": 2}]}, False,
                 id="alert:share-above-1"),
]


@pytest.mark.parametrize(("name", "value", "valid"), AGREED)
def test_schema_and_decoder_agree(name, value, valid):
    good, bad = ws.SCHEMAS[name].decode(orjson.dumps(value))
    assert (bad == []) is valid, bad
    assert (schema_errors(name, value) == []) is valid


def test_an_integer_written_with_a_fraction_passes_the_schema_but_not_driftline():
    # Documented in driftline.models.wire.schema: JSON Schema's "integer" is a value.
    value = {**P, "version": 3.0}
    assert schema_errors("prediction", value) == []
    [rejection] = ws.SCHEMAS["prediction"].decode(orjson.dumps(value))[1]
    assert rejection.error.startswith("version: must be an integer")


def test_finite_numbers_beyond_json_are_refused_by_both():
    raw = b'{"prediction_id": "p1", "model": "m", "prediction": 1e999}'
    assert ws.SCHEMAS["prediction"].decode(raw)[1][0].kind == "not_finite"
    assert schema_errors("prediction", json.loads(raw)) != []  # inf > maximum


def test_a_model_name_with_a_trailing_newline_is_refused():
    """msgspec matches patterns with re.search, where '$' also matches before a final
    newline; the wire layer anchors with \\Z, and the schema keeps ECMA-262's '$'."""
    good, bad = ws.SCHEMAS["prediction"].decode(orjson.dumps({**P, "model": "houses\n"}))
    assert good == [] and bad[0].kind == "bad_model"
    # (Python's jsonschema runs the pattern with re.search too, so it cannot show ECMA's
    # '$', which a Java, Go or JavaScript validator applies.)
    assert ws.schema("prediction")["properties"]["model"]["pattern"] == "^[A-Za-z0-9._-]{1,128}$"


def invoke(*args: str):
    return CliRunner().invoke(main, ["schema", *args])


def test_cli_lists_the_events_and_their_topics():
    result = invoke("--list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list(ws.SCHEMAS)
    assert "alert            driftline.alerts" in lines


def test_cli_prints_one_schema_or_all():
    one = invoke("scored-pair")
    assert one.exit_code == 0 and json.loads(one.output) == ws.schema("scored-pair")
    every = invoke()
    assert every.exit_code == 0 and json.loads(every.output) == ws.schemas()
    message = invoke("label", "--message")
    assert json.loads(message.output) == ws.message_schema("label")


def test_cli_writes_schema_files(tmp_path):
    result = invoke("--out", str(tmp_path / "schemas"))
    assert result.exit_code == 0
    files = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert files == sorted(f"{name}.schema.json" for name in ws.SCHEMAS)
    assert json.loads((tmp_path / "schemas" / "alert.schema.json").read_text()) == \
        ws.schema("alert")


def test_cli_refuses_an_unknown_event_naming_the_known_ones():
    result = invoke("predictions")
    assert result.exit_code == 2
    assert "no event 'predictions'" in result.output and "scored-pair" in result.output


def test_readme_schema_commands_run_as_written(tmp_path):
    [block] = readme_blocks(("<!-- schema-commands -->", "## Publishing from your service"),
                            "**Three rules")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for line in block.strip().splitlines():
        result = subprocess.run(shlex.split(line), cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    assert json.loads((tmp_path / "schemas" / "prediction.schema.json").read_text()) == \
        ws.schema("prediction")
