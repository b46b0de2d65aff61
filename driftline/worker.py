"""``driftline worker``: create the topics, then run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging

from .app import create_app, topic_configs, topics_to_create
from .kafka import ensure_topics
from .settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
    """Blocks until SIGTERM / Ctrl-C; returns the exit code."""
    import faust

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings, topics_to_create(settings),
                                          configs=topic_configs(settings)))
    app = create_app(settings)
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level.upper(),
                          redirect_stdouts=False, quiet=True)
    # mode's Worker handles SIGINT and SIGTERM itself and stops the app cleanly.
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
