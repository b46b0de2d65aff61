"""The per-model monitoring file: read with tomllib, typed and validated by msgspec, with
errors that name the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from driftline.agents.monitor.config import ModelConfig, MonitorConfig
from driftline.errors import ConfigError


def test_file_overrides_defaults_per_model(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text("""
[defaults]
window = 500
[defaults.threshold]
factor = 2.0

[models.churn]
task = "classification"
baseline_mse = 0.2
[models.churn.concept_drift]
detector = "page_hinkley"
params = { threshold = 20, min_instances = 50 }
""")
    config = MonitorConfig.load(path)
    churn, other = config.for_model("churn"), config.for_model("houses")
    assert (churn.task, churn.window, churn.baseline_mse) == ("classification", 500, 0.2)
    assert churn.threshold.factor == 2.0 and other.threshold.factor == 2.0
    assert churn.concept_drift.detector == "page_hinkley"
    assert churn.concept_drift.params == {"threshold": 20, "min_instances": 50}
    assert other.task == "regression" and other.window == 500


@pytest.mark.parametrize("text,message", [
    ("[models.m]\nwindw = 3", "unknown key(s) windw"),
    ("[models.m]\nwindow = '3'", "window: expected int, got str"),
    ("[models.m]\ntask = 'ranking'",
     "task must be 'regression', 'binary', 'multiclass' or 'classification'"),
    ("[models.m.concept_drift]\ndetector = 'kswin'",
     "detector must be one of glr, adwin, page_hinkley"),
    ("[models.m.concept_drift]\nparams = { delt = 1 }", "delt not a parameter of glr"),
    ("[models.m.concept_drift]\nparams = { reference = 5 }",
     "glr needs threshold > 0 and 20 <= reference <= 16384"),
    ("[models.m.concept_drift]\nparams = { delta = 1e-5 }",
     "delta not a parameter of glr (reference, threshold); set concept_drift.detector = 'adwin'"),
    ("[models.m.threshold]\nfactor = 0.5", "threshold.factor must be above 1"),
    ("[models.m.data_drift]\npsi_threshold = 0.2\npsi_resolve = 0.5",
     "psi_resolve < psi_threshold"),
    ("[models.m]\nfalse_alarm_budget = 0", "false_alarm_budget: expected float > 0"),
    ("[alerts]\nx = 1", "unknown table(s) alerts"),
    ("[models.m\n", "monitor.toml"),
])
def test_bad_files_say_what_to_fix(tmp_path, text, message):
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        MonitorConfig.load(path)
    assert message in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        MonitorConfig.load(tmp_path / "nope.toml")


@pytest.mark.parametrize("table,message", [
    ({"models": {"m": {"windw": 3, "cooldwn": 1}}},
     "[models.m]: unknown key(s) cooldwn, windw; known: task, decision_threshold, window"),
    ({"models": {"m": {"window": 1}}}, "[models.m].window: expected int >= 2, got 1"),
    ({"models": {"m": {"window": 2.5}}}, "[models.m].window: expected int, got float 2.5"),
    ({"models": {"m": {"task": "ranking"}}},
     "[models.m]: task must be 'regression', 'binary', 'multiclass' or 'classification', "
     "got 'ranking'"),
    ({"models": {"m": {"threshold": 3}}}, "[models.m].threshold: expected a table, got int 3"),
    ({"models": {"m": {"threshold": {"consecutive": 0}}}},
     "[models.m].threshold.consecutive: expected int >= 1, got 0"),
    ({"models": {"m": {"concept_drift": {"params": {"delta": True}}}}},
     "[models.m].concept_drift.params: every value must be a number, got bool"),
    ({"defaults": {"baseline_mse": -1.0}},
     "[defaults].baseline_mse: expected float >= 0.0, got -1.0"),
    ({"defaults": {"starvation": {"window": 0}}},
     "[defaults].starvation.window: expected int >= 1, got 0"),
    ({"defaults": {"retrain": {"kinds": ["drift", 3]}}},
     "[defaults].retrain.kinds[1]: expected str, got int 3"),
    ({"defaults": {"retrain": {"kinds": "concept_drift"}}},
     "[defaults].retrain.kinds: expected an array, got str 'concept_drift'"),
    ({"defaults": {"retrain": {"max_per_hour": 0}}},
     "[defaults].retrain.max_per_hour: expected int >= 1, got 0"),
    ({"models": {"m": 3}}, "[models.m]: must be a table, got int 3"),
    ({"models": [1]}, "[models]: must be a table, got list [1]"),
])
def test_errors_name_the_key_and_show_the_value(table, message):
    with pytest.raises(ConfigError) as err:
        MonitorConfig.from_dict(table, "monitor.toml")
    assert str(err.value).startswith(f"monitor.toml {message}"), str(err.value)


def test_a_model_table_replaces_only_the_keys_it_sets():
    config = MonitorConfig.from_dict({
        "defaults": {"cooldown": 60.0, "threshold": {"factor": 3.0},
                     "concept_drift": {"detector": "page_hinkley", "params": {"threshold": 20}}},
        "models": {"m": {"threshold": {"consecutive": 7},
                         "concept_drift": {"params": {"min_instances": 50}}}}})
    m = config.for_model("m")
    assert (m.cooldown, m.threshold.factor, m.threshold.consecutive) == (60.0, 3.0, 7)
    assert m.threshold.resolve_factor == 1.1                       # nobody set it: the default
    assert m.concept_drift.detector == "page_hinkley"               # from [defaults]
    assert m.concept_drift.params == {"min_instances": 50}          # params: replaced whole
    assert config.for_model("other") == config.defaults
    assert isinstance(m.threshold.factor, float) and isinstance(m.window, int)
    with pytest.raises(AttributeError):
        m.window = 5  # frozen: a model's config is shared by all its versions


def all_keys(struct: type[msgspec.Struct], prefix: str = "") -> set[str]:
    keys = set()
    for f in msgspec.structs.fields(struct):
        default = getattr(struct(), f.name)
        if isinstance(default, msgspec.Struct):
            keys |= all_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.add(prefix + f.name)
    return keys


def set_keys(table: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in table.items():
        if isinstance(value, dict) and name != "params":
            keys |= set_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_the_readme_documents_every_key_in_valid_examples():
    # The README and the documentation site (the monitor's pages moved there, issue 31).
    root = Path(__file__).resolve().parent.parent
    readme = "\n".join(p.read_text() for p in [*sorted((root / "docs").rglob("*.md")),
                                                root / "README.md"])
    documented = set()
    for block in re.findall(r"```toml\n(.*?)```", readme, re.S):
        data = tomllib.loads(block)
        MonitorConfig.from_dict(data, "README")  # every example is a valid file
        for table in [data.get("defaults", {}), *data.get("models", {}).values()]:
            documented |= set_keys(table)
    assert all_keys(ModelConfig) - documented == set()
