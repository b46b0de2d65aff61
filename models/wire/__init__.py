"""The wire layer: every byte format driftline reads or writes, in one place.

* :mod:`.events` - the public events of DESIGN.md as msgspec Structs;
* :mod:`.codec` - one message (an event or a JSON-array batch) to validated events or
  per-element rejections, and events back to bytes;
* :mod:`.explain` - msgspec's validation errors as driftline's stable dead-letter errors;
* :mod:`.deadletter` - the dead-letter record of a rejection;
* :mod:`.internal` - driftline's own topics: monitor-input elements, join-state records,
  the model header.

Agents, replay, the trainer's read-back and the Publisher use this package; nothing
else parses or writes these bytes.
"""

from driftline.models.wire.codec import (
                                         ALERT,
                                         ALERT_DELIVERY,
                                         DEAD_LETTER,
                                         KINDS,
                                         LABEL,
                                         MODEL_EVENT,
                                         PREDICTION,
                                         RETRAIN_REQUEST,
                                         SCORED_PAIR,
                                         EventKind,
                                         Rejection,
                                         array,
                                         arrays,
                                         decode,
                                         encode,
                                         scored_pairs,
                                         unbatch,
)
from driftline.models.wire.events import (
                                         Alert,
                                         AlertDelivery,
                                         DeadLetter,
                                         Label,
                                         ModelEvent,
                                         Prediction,
                                         RetrainRequest,
                                         ScoredPair,
)

__all__ = ["ALERT", "ALERT_DELIVERY", "DEAD_LETTER", "KINDS", "LABEL", "MODEL_EVENT",
           "PREDICTION", "RETRAIN_REQUEST", "SCORED_PAIR", "Alert", "AlertDelivery",
           "DeadLetter", "EventKind", "Label", "ModelEvent", "Prediction", "Rejection",
           "RetrainRequest", "ScoredPair", "array", "arrays", "decode", "encode", "scored_pairs",
           "unbatch"]
