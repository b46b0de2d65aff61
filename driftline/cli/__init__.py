"""The ``driftline`` command (console script ``driftline = driftline.cli:main``, and
``python -m driftline``).

One module per group of sub-commands, each importing only :mod:`._common`, so there
is no cycle: :mod:`.services` (worker, trainer, delivery), :mod:`.embedded` (stack up,
up, demo), :mod:`.ops` (publish, alerts, replay, health, simulate, config),
:mod:`.silences` (alerts silence, silences, unsilence), :mod:`.registry` (the
registry) and :mod:`.schema` (the events' JSON Schema).

Exit codes: 0 ok, 1 runtime failure (a service failed, a broker is unreachable),
2 bad usage or configuration (the message says what to change), 3 bad rows skipped
(publish, replay).
"""

from __future__ import annotations

import click

from ._common import EXIT_FAILURE, EXIT_OK, EXIT_SKIPPED_ROWS, EXIT_USAGE
from .embedded import demo, stack, up
from .offline import replay, simulate
from .ops import alerts, config, health, publish
from .pairs import pairs
from .registry import models
from .schema import schema
from .services import delivery, trainer, worker
from .silences import silence, silences, unsilence

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_SKIPPED_ROWS", "EXIT_USAGE", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="driftline")
def main() -> None:
    """driftline: monitor ML models in production from their Kafka prediction and label streams."""


for _command in (worker, trainer, delivery, models, publish, alerts, replay, health, simulate,
                 config, stack, up, demo, schema, pairs):
    main.add_command(_command)
for _command in (silence, silences, unsilence):
    alerts.add_command(_command)
