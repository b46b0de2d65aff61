"""The embedded development stack: real Kafka (Tansu, or Apache Kafka) and a real Valkey
on loopback, for laptops, the demo and the tests; never for production.

* :mod:`.stack` - :class:`EmbeddedStack`, the broker and Valkey together;
* :mod:`.service` - :class:`Service`, one supervised binary on a port;
* :mod:`.apache_kafka` - the Apache Kafka broker from Maven Central's jars (``broker/``
  holds its ``pom.xml`` and log configuration);
* :mod:`._supervise` - the supervisor every child runs under, so none outlives its owner;
* :mod:`.processes` - driftline commands as supervised children (``driftline up``, ``demo``).

The runtime (worker, agents, SDK) never imports this package; ``driftline stack up``,
``driftline up`` and ``driftline demo`` do, when they run (tests/test_house.py checks).
"""

from .service import Service
from .stack import EmbeddedStack

__all__ = ["EmbeddedStack", "Service"]
