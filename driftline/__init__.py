"""driftline: a streaming monitor that keeps machine-learning models healthy in production."""

import typing as _typing

from .errors import (
    ArtifactError,
    ConfigError,
    DriftlineError,
    PublishError,
    RegistryError,
    RegistryUnavailable,
    SchemaError,
    StackError,
    TopicError,
)
from .model_client import ModelClient
from .models.classifiers import LogisticModel, SoftmaxModel
from .models.linear import LinearModel
from .models.registry import ModelRegistry
from .settings import Settings

if _typing.TYPE_CHECKING:
    from .publisher import Publisher, SyncPublisher

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DriftlineError",
    "LinearModel",
    "LogisticModel",
    "ModelClient",
    "ModelRegistry",
    "Publisher",
    "PublishError",
    "RegistryError",
    "RegistryUnavailable",
    "SchemaError",
    "SoftmaxModel",
    "Settings",
    "StackError",
    "SyncPublisher",
    "TopicError",
]

# The publisher brings aiokafka with it; serving code that only reads models
# (ModelClient, ModelRegistry) should not pay for it, so it is imported on first use
# (PEP 562). tests/test_package.py checks that `import driftline` imports no aiokafka
# and that vars(driftline) holds exactly __all__ once the names are touched.
_LAZY = {"Publisher": ".publisher", "SyncPublisher": ".publisher"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

