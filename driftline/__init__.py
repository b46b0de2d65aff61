"""driftline: a streaming monitor that keeps machine-learning models healthy in production."""

from .errors import (ArtifactError, ConfigError, DriftlineError, PublishError, RegistryError,
                     RegistryUnavailable, SchemaError, StackError, TopicError)
from .model_client import ModelClient
from .models.linear import LinearModel
from .models.registry import ModelRegistry
from .publisher import Publisher, SyncPublisher
from .settings import Settings

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DriftlineError",
    "LinearModel",
    "ModelClient",
    "ModelRegistry",
    "Publisher",
    "PublishError",
    "RegistryError",
    "RegistryUnavailable",
    "SchemaError",
    "Settings",
    "StackError",
    "SyncPublisher",
    "TopicError",
]
