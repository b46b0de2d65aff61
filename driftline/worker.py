"""``driftline worker`` and ``driftline trainer``: create the topics, then run a Faust
worker until stopped."""

from __future__ import annotations

import asyncio
import gc
import logging

from .app import WORKER_AGENTS, components, create_app, topic_configs, topics_to_create
from .kafka import ensure_topics
from .settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, agents: tuple[str, ...] = WORKER_AGENTS) -> int:
    """Blocks until SIGTERM / Ctrl-C; returns the exit code."""
    import faust

    if settings.web_port:
        from .web import check_access

        check_access(settings)  # before anything is created
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(ensure_topics(settings, topics_to_create(settings),
                                              configs=topic_configs(settings)))
        app = create_app(settings, agents=agents)
    except BaseException:
        loop.close()
        raise
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level.upper(),
                          redirect_stdouts=False, quiet=True)
    # Faust's terminal spinner, at log levels from WARNING up, sets the root logger to
    # DEBUG so that it can spin on every record: every debug call in aiokafka then
    # builds a LogRecord (4 % of the worker's CPU, measured with py-spy). A service
    # has no terminal to spin in.
    worker.spinner = None
    freeze_startup_objects()
    # mode's Worker handles SIGINT and SIGTERM itself and stops the app cleanly.
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        for component in components(app).values():
            close = getattr(component, "close", None)
            if close is not None:
                close()
    return 0


def freeze_startup_objects() -> None:
    """Take what is alive once the app is built (modules, Faust, the app: ~140,000
    objects) out of the garbage collector's full passes for good.

    Each full collection walked all of them again: traced on bench/harness.py (c), it
    paused the event loop 50-60 ms every ~20 s at 5,000 pairs/s and 100-250 ms every
    6-8 s at 9,000 (every stage waits while it runs); with them frozen a full collection
    took 1-13 ms. Objects made later (partition states) are still collected as before."""
    gc.collect()
    gc.freeze()


def run_trainer(settings: Settings) -> int:
    """The trainer in its own consumer group, so it scales and restarts apart."""
    return run_worker(settings.replace(group_id=settings.trainer_group_id, web_port=0),
                      ("trainer",))


def run_delivery(settings: Settings) -> int:
    """Alert delivery in its own consumer group: a slow receiver never holds back the
    monitor."""
    from .agents.delivery.receivers import targets
    from .errors import ConfigError

    if not targets(settings):  # before any connection is made
        raise ConfigError("nothing to deliver to: set DRIFTLINE_ALERTMANAGER_URL and/or "
                          "DRIFTLINE_ALERT_WEBHOOKS")
    # Links point at the worker's dashboard (the delivery process serves none itself).
    dashboard = settings.dashboard_url or (
        f"http://{settings.web_host}:{settings.web_port or 6066}/")
    return run_worker(settings.replace(group_id=settings.delivery_group_id, web_port=0,
                                       dashboard_url=dashboard), ("delivery",))
