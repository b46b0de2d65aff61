"""How ``driftline models show --version`` and ``models diff`` print a model's explanation."""

from __future__ import annotations

from typing import Any

import click

from ..models.explanation import bar


def _num(value: Any, spec: str = ".4g") -> str:
    return "–" if value is None else format(value, spec)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:6.1%}"


def echo_version(info: Any, explanation: dict[str, Any], table: Any) -> None:
    """One version: what it is, how it was trained, and what it does with its features."""
    meta = info.meta
    holdout = meta.get("holdout") or {}
    click.echo(f"{info.model} v{info.version}  {info.status}"
               + (f"  ({', '.join(info.aliases)})" if info.aliases else ""))
    click.echo(f"  parent v{meta.get('parent_version')}  holdout MSE "
               f"{_num(holdout.get('challenger_mse', (meta.get('metrics') or {}).get('mse')))}"
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
    ma, mb = a.meta, b.meta

    def holdout(meta: dict[str, Any]) -> Any:
        return (meta.get("holdout") or {}).get("challenger_mse",
                                               (meta.get("metrics") or {}).get("mse"))
    click.echo(f"{model} v{a.version} -> v{b.version}")
    click.echo(f"  holdout MSE {_num(holdout(ma))} -> {_num(holdout(mb))}; status "
               f"{a.status} -> {b.status}; parent of v{b.version}: v{mb.get('parent_version')}")
    table(["FEATURE", f"STD COEF v{a.version}", f"STD COEF v{b.version}",
           f"SHARE v{a.version}", f"SHARE v{b.version}", "CHANGE"],
          [[r["feature"], _num(r["std_coef"][0]), _num(r["std_coef"][1]),
            _share(r["variance_share"][0]), _share(r["variance_share"][1]), r["change"]]
           for r in rows])
