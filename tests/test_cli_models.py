"""`driftline models ...` against a real Valkey, through the CLI runner."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from driftline import LinearModel, SoftmaxModel
from driftline.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def run(stack):
    env = {"DRIFTLINE_REDIS_URL": stack.redis_url,
           "DRIFTLINE_REGISTRY_PREFIX": f"cli{uuid.uuid4().hex[:8]}:"}

    def invoke(*args: str, code: int = 0):
        result = CliRunner().invoke(main, ["models", *args], env=env)
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def test_register_promote_rollback_history_as_json(run, tmp_path):
    for k in (1, 2):
        (tmp_path / f"m{k}.npz").write_bytes(LinearModel([float(k)], 0.0, ["x"]).to_bytes())
    assert json.loads(run("register", "houses", str(tmp_path / "m1.npz"), "--promote",
                          "--metrics", '{"mse": 2.5}', "--json")) == {
        "model": "houses", "version": 1, "promoted": True}
    assert "registered houses v2" in run("register", "houses", str(tmp_path / "m2.npz"))
    assert json.loads(run("promote", "houses", "2", "--reason", "better", "--json")) == {
        "model": "houses", "alias": "champion", "version": 2, "previous": 1}
    assert "v2 -> v1 (rolled back)" in run("rollback", "houses", "--reason", "oops")
    listed = json.loads(run("list", "--json"))
    assert listed == [{"model": "houses", "versions": 2, "latest": 2,
                       "aliases": {"champion": 1}}]
    shown = json.loads(run("show", "houses", "--json"))
    assert [(v["version"], v["aliases"], v["meta"]["metrics"]) for v in shown] == [
        (1, ["champion"], {"mse": 2.5}), (2, [], {})]
    history = json.loads(run("history", "houses", "--json"))
    assert [(h["action"], h["version"], h["reason"]) for h in history] == [
        ("registered", 1, ""), ("promoted", 1, ""), ("registered", 2, ""),
        ("promoted", 2, "better"), ("rolled_back", 1, "oops")]


def test_human_tables(run, tmp_path):
    (tmp_path / "m.npz").write_bytes(LinearModel([1.0], 0.0).to_bytes())
    run("register", "houses", str(tmp_path / "m.npz"), "--promote", "--metrics", '{"mse": 1.25}')
    table = run("show", "houses").splitlines()
    assert table[0].split() == ["VERSION", "KIND", "STATUS", "ALIASES", "CREATED", "PARENT",
                                "HOLDOUT", "LOSS"]
    assert table[1].split()[:4] == ["1", "linear", "active", "champion"]
    assert table[1].endswith("1.25")
    # A classifier says what it is and what its holdout loss measures.
    (tmp_path / "c.npz").write_bytes(SoftmaxModel([[1.0], [-1.0]], [0.0, 0.0], ["x"],
                                                  ["a", "b"]).to_bytes())
    run("register", "intents", str(tmp_path / "c.npz"), "--metrics", '{"log_loss": 0.5}')
    row = run("show", "intents").splitlines()[1]
    assert row.split()[:3] == ["1", "softmax", "active"] and row.endswith("log loss 0.5")
    shown = json.loads(run("show", "intents", "--version", "1", "--json"))
    assert (shown["kind"], shown["task"], shown["holdout"]) == (
        "softmax", "multiclass", {"log_loss": 0.5})
    assert "intents v1  active  softmax (multiclass)" in run("show", "intents", "--version", "1")
    assert "houses" in run("list") and "promoted" in run("history", "houses")


def test_errors_say_what_is_wrong(run, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    assert "malformed artifact" in run("register", "m", str(bad), code=1)
    assert "no model 'ghost'" in run("show", "ghost", code=1)
    assert "nothing to roll back to" in run("rollback", "ghost", code=1)
    (tmp_path / "ok.npz").write_bytes(LinearModel([1.0], 0.0).to_bytes())
    assert "--metrics" in run("register", "m", str(tmp_path / "ok.npz"), "--metrics", "[1]",
                              code=2)
    assert "does not exist" in run("register", "m", str(tmp_path / "none.npz"), code=2)


def test_unreachable_redis_is_exit_1_with_a_hint():
    result = CliRunner().invoke(main, ["models", "list", "--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 1
    assert "Redis is unreachable" in result.output and "DRIFTLINE_REDIS_URL" in result.output


def test_show_version_explains_and_diff_compares(stack):
    import numpy as np

    from driftline import ModelRegistry
    from driftline.models.explanation import explain
    from driftline.models.selection import train_selected

    prefix = f"cli{uuid.uuid4().hex[:8]}:"
    env = {"DRIFTLINE_REDIS_URL": stack.redis_url, "DRIFTLINE_REGISTRY_PREFIX": prefix}
    rng = np.random.default_rng(8)
    X = rng.normal(size=(600, 3))
    y1 = 2 * X[:, 0] + rng.normal(0, 0.5, 600)
    y2 = 2 * X[:, 0] + 3 * X[:, 2] + rng.normal(0, 0.5, 600)
    registry = ModelRegistry.from_url(stack.redis_url, prefix=prefix)
    for y in (y1, y2):
        fit = train_selected(X, y, ["a", "b", "c"])
        registry.register("houses", fit.model, meta={
            "selection": fit.selection.describe(), "explanation": explain(fit.model, X),
            "holdout": {"challenger_mse": 0.25}})
    registry.close()

    def run(*args):
        result = CliRunner().invoke(main, ["models", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    shown = json.loads(run("show", "houses", "--version", "2", "--json"))
    shares = {f["feature"]: f["variance_share"] for f in shown["explanation"]["features"]}
    assert shares["c"] == pytest.approx(9 / 13, abs=0.05) and shares["b"] == 0.0
    assert shown["meta"]["selection"]["kept"] == ["a", "c"]
    text = run("show", "houses", "--version", "1")
    assert "explanation on 600 training rows" in text and "kept: a" in text
    assert "dropped c: not selected" in text
    line = next(row for row in text.splitlines() if row.startswith("a "))
    assert line.split()[-2:] == ["100.0%", "#" * 20]
    diffed = json.loads(run("diff", "houses", "1", "2", "--json"))
    change = {r["feature"]: r["change"] for r in diffed["features"]}
    assert change == {"a": "changed", "b": "same", "c": "added"}
    assert diffed["features"][-1]["feature"] == "b"  # the largest change of share first
    table = run("diff", "houses", "1", "2").splitlines()
    assert table[0] == "houses v1 -> v2" and table[2].split()[:3] == ["FEATURE", "STD", "COEF"]
    rows = {row.split()[0]: row.split() for row in table[3:]}
    share_c = next(r["variance_share"][1] for r in diffed["features"] if r["feature"] == "c")
    assert rows["c"][-3:] == ["0.0%", f"{share_c:.1%}", "added"]
