"""``driftline models``: the registry from the command line. ``--json`` for scripts."""

from __future__ import annotations

import datetime
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ArtifactError, RegistryError, RegistryUnavailable
from ..models.explanation import bar
from ._common import EXIT_FAILURE, load_settings, setting_option


def registry_command(fn=None, *, events: bool = False):
    """Adds --redis-url and --json (and, for commands that change the registry, --kafka-url
    and --no-events); opens the registry; maps errors to exit codes."""
    if fn is None:
        return functools.partial(registry_command, events=events)

    @setting_option("--redis-url", help="Redis URL of the model registry.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @functools.wraps(fn)
    def wrapper(redis_url, as_json, kafka_url=None, no_events=True, **kwargs):
        from ..model_events import KafkaModelEvents
        from ..models.registry import ModelRegistry

        settings = load_settings(redis_url=redis_url, kafka_url=kafka_url)
        registry = None
        try:
            # Model events go to Kafka when a broker is configured (flag or environment).
            configured = kafka_url or "DRIFTLINE_KAFKA_URL" in os.environ
            sink = KafkaModelEvents(settings=settings) if configured and not no_events else None
            registry = ModelRegistry.from_settings(settings, on_event=sink)
            fn(registry=registry, as_json=as_json, **kwargs)
        except RegistryUnavailable as exc:
            click.echo(f"error: {exc} (is DRIFTLINE_REDIS_URL right?)", err=True)
            sys.exit(EXIT_FAILURE)
        except (RegistryError, ArtifactError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILURE)
        except Exception as exc:  # Kafka unreachable for events, and the like
            if type(exc).__module__.startswith(("aiokafka", "driftline")):
                click.echo(f"error: {exc}; pass --no-events to skip model events", err=True)
                sys.exit(EXIT_FAILURE)
            raise
        finally:
            if registry is not None:
                registry.close()

    if events:
        wrapper = click.option("--no-events", is_flag=True,
                               help="Do not publish model events to Kafka.")(wrapper)
        wrapper = setting_option("--kafka-url", help="Where model events go.")(wrapper)
    return wrapper


@click.group()
def models() -> None:
    """The model registry in Redis: versions, aliases, promotions, history."""


@models.command("list")
@registry_command
def list_models(registry, as_json: bool) -> None:
    """Models with their latest version and aliases."""
    rows = []
    for name in registry.models():
        versions = registry.versions(name)
        rows.append({"model": name, "versions": len(versions),
                     "latest": versions[-1].version if versions else None,
                     "aliases": registry.aliases(name)})
    if as_json:
        click.echo(json.dumps(rows))
        return
    _table(["MODEL", "VERSIONS", "LATEST", "ALIASES"],
           [[r["model"], r["versions"], r["latest"],
             ", ".join(f"{a}=v{v}" for a, v in sorted(r["aliases"].items()))] for r in rows])


@models.command()
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="One version in detail: its standardised coefficients, each feature's "
                   "share of the prediction variance, the features kept and dropped.")
@registry_command
def show(registry, as_json: bool, name: str, version: int | None) -> None:
    """Every version of NAME with its status, aliases and holdout MSE; with --version, what
    that version does with its features."""
    from ..models.explanation import stored

    if version is not None:
        info = registry.get(name, version)
        explanation = stored(registry.load(name, version=version))
        if as_json:
            click.echo(json.dumps({**info.as_dict(), "explanation": explanation}))
        else:
            echo_version(info, explanation, _table)
        return
    versions = registry.versions(name)
    if not versions:
        raise RegistryError(f"no model {name!r}")
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in versions]))
        return
    _table(["VERSION", "KIND", "STATUS", "ALIASES", "CREATED", "PARENT", "HOLDOUT LOSS"],
           [[v.version, v.kind, v.status, ", ".join(v.aliases), _when(v.created),
             v.meta.get("parent_version"), _holdout(v)] for v in versions])


@models.command()
@click.argument("name")
@click.argument("v1", type=click.IntRange(min=1))
@click.argument("v2", type=click.IntRange(min=1))
@registry_command
def diff(registry, as_json: bool, name: str, v1: int, v2: int) -> None:
    """What changed from version V1 of NAME to V2: holdout MSE, and per feature the
    standardised coefficient and share of the prediction variance."""
    from ..models.explanation import diff as explanation_diff
    from ..models.explanation import stored

    a, b = registry.get(name, v1), registry.get(name, v2)
    rows = explanation_diff(stored(registry.load(name, version=v1)),
                            stored(registry.load(name, version=v2)))
    if as_json:
        click.echo(json.dumps({"model": name, "versions": [v1, v2], "features": rows,
                               "holdout": [dict([a.holdout]), dict([b.holdout])],
                               "status": [a.status, b.status]}))
    else:
        echo_diff(name, a, b, rows, _table)


@models.command()
@click.argument("name")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--metrics", default="{}", help='Holdout metrics as JSON, e.g. \'{"mse": 1.2}\'.')
@click.option("--promote", "promote_to", is_flag=True, help="Also make it the champion.")
@click.option("--reason", default="", help="Recorded in the history.")
@click.option("--task", type=click.Choice(["regression", "binary", "multiclass"]), default=None,
              help="The model's task: needed for a plain .onnx file; for an .npz it may only "
                   "repeat the file's.")
@click.option("--features", default=None, metavar="A,B,C",
              help="Feature names, comma-separated: an .onnx with one [N, d] input's columns "
                   "in order (default x0..), or its per-feature inputs in the order array "
                   "rows use.")
@click.option("--classes", default=None, metavar="A,B,C",
              help="A classifier's classes in its probabilities' order, when the .onnx "
                   "graph does not say (integers stay integers).")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="DATA",
              help="The version's reference profile: rows of features (JSON lines or CSV), "
                   "with `prediction` and `label` where known (the model predicts the rows "
                   "that have none); drift is measured against it, not against the "
                   "version's first production predictions.")
@registry_command(events=True)
def register(registry, as_json: bool, name: str, artifact: Path, metrics: str,
             promote_to: bool, reason: str, task: str | None, features: str | None,
             classes: str | None, reference: Path | None) -> None:
    """Register ARTIFACT (an .npz of a built-in model kind, or an .onnx file) as the next
    version of NAME.

    An .npz holds a linear, logistic or softmax model. An .onnx file is kind onnx, served
    with onnxruntime (pip install 'driftline[onnx]'); it needs --task unless driftline
    wrote it."""
    from ..models.kinds import from_file

    try:
        parsed = json.loads(metrics)
        if not isinstance(parsed, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise click.BadParameter(f"must be a JSON object ({exc})", param_hint="--metrics") \
            from None
    model = from_file(artifact.read_bytes(), task=task, feature_names=_names(features),
                      classes=_classes(classes))
    profile = _reference(reference, model) if reference is not None else None
    version = registry.register(name, model, metrics=parsed, reason=reason, reference=profile)
    if promote_to:
        registry.promote(name, version, reason=reason)
    if as_json:
        click.echo(json.dumps({"model": name, "version": version, "promoted": promote_to}))
    else:
        click.echo(f"registered {name} v{version}" + (" and promoted it" if promote_to else ""))


def _reference(path: Path, model: Any) -> dict[str, Any]:
    """The profile of a reference file, the rows without a prediction predicted by
    ``model`` (what the monitor compares the version's predictions with)."""
    from ..errors import SchemaError
    from ..eventfile import read_reference
    from ..models.reference import profile, with_predictions

    try:
        rows = read_reference(path)
    except (OSError, SchemaError) as exc:
        raise click.BadParameter(str(exc), param_hint="--reference") from None
    return profile(with_predictions(rows, model), source=path.name)


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [n.strip() for n in value.split(",")]


def _classes(value: str | None) -> list[Any] | None:
    names = _names(value)
    if names is None:
        return None
    try:
        return [int(n) for n in names]
    except ValueError:
        return names


@models.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--alias", default="champion", show_default=True)
@click.option("--reason", default="", help="Recorded in the history.")
@registry_command(events=True)
def promote(registry, as_json: bool, name: str, version: int, alias: str, reason: str) -> None:
    """Point ALIAS (champion) of NAME at VERSION."""
    previous = registry.promote(name, version, alias, reason=reason)
    if as_json:
        click.echo(json.dumps({"model": name, "alias": alias, "version": version,
                               "previous": previous}))
    else:
        click.echo(f"{name} {alias}: v{previous} -> v{version}" if previous
                   else f"{name} {alias}: v{version}")


@models.command()
@click.argument("name")
@click.option("--alias", default="champion", show_default=True)
@click.option("--reason", default="", help="Recorded in the history.")
@registry_command(events=True)
def rollback(registry, as_json: bool, name: str, alias: str, reason: str) -> None:
    """Point ALIAS (champion) of NAME back at its previous version."""
    before = registry.resolve(name, alias)
    version = registry.rollback(name, alias, reason=reason)
    if as_json:
        click.echo(json.dumps({"model": name, "alias": alias, "version": version,
                               "previous": before}))
    else:
        click.echo(f"{name} {alias}: v{before} -> v{version} (rolled back)")


@models.command()
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Oldest N entries.")
@registry_command
def history(registry, as_json: bool, name: str, limit: int | None) -> None:
    """Who did what to NAME, when and why, oldest first."""
    rows = registry.history(name, count=limit)
    if as_json:
        click.echo(json.dumps(rows))
        return
    _table(["TIME", "ACTION", "VERSION", "ALIAS", "PREVIOUS", "ACTOR", "REASON"],
           [[_when(r["time"]), r["action"], r["version"], r["alias"], r["previous"],
             r["actor"], r["reason"]] for r in rows])


def _table(headers: list[str], rows: list[list]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [headers] + cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%S")


def _holdout(info: Any) -> str:
    """The holdout loss of a version, named: ``0.412`` for MSE, ``log loss 0.412``."""
    metric, value = info.holdout
    if value is None:
        return ""
    return f"{value:.4g}" if metric == "mse" else f"{metric.replace('_', ' ')} {value:.4g}"


# --- explanations (models show --version, models diff) ------------------------------

def _num(value: Any, spec: str = ".4g") -> str:
    return "–" if value is None else format(value, spec)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:6.1%}"


def echo_version(info: Any, explanation: dict[str, Any], table: Any) -> None:
    """One version: what it is, how it was trained, and what it does with its features."""
    meta = info.meta
    click.echo(f"{info.model} v{info.version}  {info.status}  {info.kind} ({info.task})"
               + (f"  ({', '.join(info.aliases)})" if info.aliases else ""))
    click.echo(f"  parent v{meta.get('parent_version')}  holdout {_holdout(info) or '–'}"
               f"  trainer {meta.get('trainer', '–')}")
    if meta.get("decision_reason"):
        click.echo(f"  decision: {meta.get('decision')}: {meta['decision_reason']}")
    rows = explanation.get("rows") or 0
    click.echo(f"  explanation on {rows:,} training rows" if rows else
               "  no training rows stored: coefficients only")
    features = explanation.get("features", [])
    table(["FEATURE", "COEF", "STD COEF", "VARIANCE SHARE", ""],
          [[f["feature"], _num(f["coef"]), _num(f["std_coef"]), _share(f["variance_share"]),
            bar(f["variance_share"]) if f["variance_share"] is not None else ""]
           for f in features])
    selection = meta.get("selection")
    if selection:
        click.echo(f"  kept: {', '.join(selection['kept']) or '(none: intercept only)'}")
        for dropped in selection["dropped"]:
            click.echo(f"  dropped {dropped['feature']}: {dropped['reason']}")


def echo_diff(model: str, a: Any, b: Any, rows: list[dict[str, Any]], table: Any) -> None:
    click.echo(f"{model} v{a.version} -> v{b.version}")
    click.echo(f"  holdout {_holdout(a) or '–'} -> {_holdout(b) or '–'}; status "
               f"{a.status} -> {b.status}; parent of v{b.version}: "
               f"v{b.meta.get('parent_version')}")
    table(["FEATURE", f"STD COEF v{a.version}", f"STD COEF v{b.version}",
           f"SHARE v{a.version}", f"SHARE v{b.version}", "CHANGE"],
          [[r["feature"], _num(r["std_coef"][0]), _num(r["std_coef"][1]),
            _share(r["variance_share"][0]), _share(r["variance_share"][1]), r["change"]]
           for r in rows])
