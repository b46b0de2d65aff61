"""The monitor's alert rules, one module each, in River's shape: ``update(...)`` returns
the rule, its state is read through attributes and properties.

They share one hysteresis (:mod:`.hysteresis`: runs of breaches and of clears) and
one :class:`~.subject.Subject` per (model, version): its alert book, rolling errors
and baseline. :class:`~driftline.agents.monitor.core.VersionMonitor` feeds them in
order and merges what they raise.

========================  ==========================================  ====================
rule                      fires                                       module
========================  ==========================================  ====================
``concept_drift``         the error detector sees the error rise      :mod:`.concept_drift`
``metric_threshold``      rolling MSE > factor x baseline, N in a row :mod:`.threshold`
``data_drift``            a feature's PSI > limit, N checks in a row  :mod:`.data_drift`
``prediction_drift``      the prediction's PSI, likewise              :mod:`.prediction_drift`
``label_starvation``      too many predictions expire unlabeled       :mod:`.starvation`
========================  ==========================================  ====================
"""

from driftline.agents.monitor.rules.concept_drift import ConceptDriftRule
from driftline.agents.monitor.rules.data_drift import DataDriftRule
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.prediction_drift import PredictionDriftRule
from driftline.agents.monitor.rules.psi import PSIRule
from driftline.agents.monitor.rules.starvation import LabelStarvationRule
from driftline.agents.monitor.rules.subject import Subject
from driftline.agents.monitor.rules.threshold import ThresholdRule

__all__ = ["ConceptDriftRule", "DataDriftRule", "Hysteresis", "LabelStarvationRule",
           "PSIRule", "PredictionDriftRule", "Subject", "ThresholdRule"]
