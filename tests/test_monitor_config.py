"""The per-model monitoring file: parsed with tomllib, validated with clear errors."""

from __future__ import annotations

import pytest

from driftline.agents.monitor.config import MonitorConfig
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
    ("[models.m]\ntask = 'ranking'", "task must be 'regression' or 'classification'"),
    ("[models.m.concept_drift]\ndetector = 'kswin'", "detector must be one of adwin, page_hinkley"),
    ("[models.m.concept_drift]\nparams = { delt = 1 }", "delt not a parameter of adwin"),
    ("[models.m.threshold]\nfactor = 0.5", "threshold.factor must be above 1"),
    ("[models.m.data_drift]\npsi_resolve = 0.5", "psi_resolve < psi_threshold"),
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
