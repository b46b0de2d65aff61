"""The exceptions driftline raises. Catch :class:`DriftlineError` to catch them all."""

from __future__ import annotations


class DriftlineError(Exception):
    """Root of every error driftline raises on purpose.

    ``retriable`` says whether trying the same thing again later can help
    (a broker that is down: yes; a malformed event: no).
    """

    retriable: bool = False


class ConfigError(DriftlineError, ValueError):
    """A setting or CLI argument is invalid; the message says which and what to do."""


class SchemaError(DriftlineError, ValueError):
    """An event does not match the wire format in DESIGN.md.

    ``path`` names the offending field (``"features.x1"``, ``"[3].prediction"``),
    ``kind`` is a short stable error class used for dead-letter counters.
    """

    def __init__(self, message: str, *, path: str = "", kind: str = "invalid") -> None:
        self.path = path
        self.kind = kind
        self.detail = message
        super().__init__(f"{path}: {message}" if path else message)

    def under(self, prefix: str) -> SchemaError:
        """The same error inside ``prefix``: ``"[3]"`` + ``"prediction"`` is
        ``"[3].prediction"``."""
        if not prefix:
            return self
        return SchemaError(self.detail, path=f"{prefix}.{self.path}" if self.path else prefix,
                           kind=self.kind)


class StackError(DriftlineError):
    """An embedded service (Tansu or Valkey) failed to start or to answer."""


class TopicError(DriftlineError):
    """A topic is missing or exists with a layout driftline cannot use."""


class RegistryError(DriftlineError):
    """A registry operation was refused: unknown model or version, alias rules, conflicts."""


class RegistryUnavailable(RegistryError):
    """Redis could not be reached; trying again later can help."""

    retriable = True


class ArtifactError(DriftlineError, ValueError):
    """A model artifact is malformed, unsafe (object arrays) or fails its checksum."""


class PublishError(DriftlineError):
    """Events could not be delivered to Kafka."""

    retriable = True
