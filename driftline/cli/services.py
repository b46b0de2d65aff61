"""``driftline worker`` and ``driftline trainer``: the long-running services."""

from __future__ import annotations

import click

from ..settings import Settings
from ._common import run_service, settings_options


def _agents(ctx: click.Context, param: click.Parameter,
            value: str | None) -> tuple[str, ...] | None:
    from ..app import WORKER_AGENTS

    if value is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in WORKER_AGENTS]
    if not names or unknown:
        raise click.BadParameter(f"{', '.join(unknown) or 'nothing'}: choose from "
                                 f"{', '.join(WORKER_AGENTS)} (comma-separated)")
    return names


@click.command()
@settings_options
@click.option("--agents", callback=_agents, metavar="NAMES",
              help="Comma-separated subset of join,monitor,trigger (default: all).")
def worker(settings: Settings, agents: tuple[str, ...] | None) -> None:
    """Run the Faust worker until SIGTERM or Ctrl-C: the join, the monitor and the
    retrain trigger (or the --agents subset).

    Creates the topics it needs with --partitions partitions first, and refuses
    to start if they exist with another partition count.
    """
    from ..app import WORKER_AGENTS
    from ..worker import run_worker

    run_service(settings, lambda: run_worker(settings, agents or WORKER_AGENTS))


@click.command()
@settings_options
def trainer(settings: Settings) -> None:
    """Run the training worker until SIGTERM or Ctrl-C: train, compare and register a
    challenger for each retrain request, and promote it if it wins.

    Uses its own consumer group (DRIFTLINE_GROUP_ID + "-trainer"); start more
    than one to train several models at once.
    """
    from ..worker import run_trainer

    run_service(settings, lambda: run_trainer(settings))


@click.command()
@settings_options
def delivery(settings: Settings) -> None:
    """Run alert delivery until SIGTERM or Ctrl-C: push every alert to Alertmanager
    (DRIFTLINE_ALERTMANAGER_URL) and the webhooks (DRIFTLINE_ALERT_WEBHOOKS), apply
    silences and inhibition, and record each outcome on the alert-deliveries topic.

    Uses its own consumer group (DRIFTLINE_GROUP_ID + "-delivery"), so a receiver that
    is slow or down holds back only delivery.
    """
    from ..worker import run_delivery

    run_service(settings, lambda: run_delivery(settings))
