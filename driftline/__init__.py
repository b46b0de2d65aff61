"""driftline: a streaming monitor that keeps machine-learning models healthy in production."""

from .errors import (ConfigError, DriftlineError, PublishError, SchemaError, StackError,
                     TopicError)
from .publisher import Publisher, SyncPublisher
from .settings import Settings

__all__ = [
    "ConfigError",
    "DriftlineError",
    "Publisher",
    "PublishError",
    "SchemaError",
    "Settings",
    "StackError",
    "SyncPublisher",
    "TopicError",
]
