"""What the registry says of one version (:meth:`ModelRegistry.get`), without its artifact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: int
    created: float
    status: str
    checksum: str
    meta: dict[str, Any]
    aliases: tuple[str, ...]

    @property
    def kind(self) -> str:
        """The model kind (versions registered before kinds existed are ``linear``)."""
        return str(self.meta.get("kind", "linear"))

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "regression"))

    @property
    def holdout(self) -> tuple[str, float | None]:
        """(metric, value) of the holdout loss the version was judged by: ``mse``, a
        classifier's ``log_loss`` (or ``brier``, ``error_rate``); from the trainer's
        ``holdout``, else the registered ``metrics``."""
        holdout = self.meta.get("holdout") or {}
        metrics = self.meta.get("metrics") or {}
        metric = holdout.get("metric") or next(
            (m for m in ("mse", "log_loss", "brier", "error_rate") if m in metrics), "mse")
        value = holdout.get(f"challenger_{metric}", metrics.get(metric))
        return metric, (float(value) if isinstance(value, (int, float)) else None)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "created": self.created,
                "status": self.status, "checksum": self.checksum, "aliases": list(self.aliases),
                "kind": self.kind, "task": self.task, "holdout": dict([self.holdout]),
                "meta": self.meta}
