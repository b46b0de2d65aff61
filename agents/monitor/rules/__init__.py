"""The monitor's alert rules, one module each, in River's shape: ``update(seen)`` returns
the rule, its state is read through attributes and properties.

Each (the first two below together) is a :class:`~.rule.Rule`: it ``watches`` some
kinds of batch (scored pairs, predictions, expired predictions), is fed each as one
:class:`~.rule.Seen`, and holds what that batch raised in ``alerts``. They share one
hysteresis (:mod:`.hysteresis`: runs of breaches and of clears) and one
:class:`~.subject.Subject` per (model, version): its alert book, rolling errors and
baseline. :class:`~driftline.agents.monitor.version.VersionMonitor` feeds them in order
and merges what they raise.

* ``concept_drift`` (:mod:`.concept_drift`): the error detector sees the error rise;
* ``metric_threshold`` (:mod:`.threshold`): rolling MSE above factor x baseline, N pairs
  in a row; its resolve also closes the concept-drift episode, so the two are fed as one
  rule (:mod:`.errors`);
* ``data_drift`` (:mod:`.data_drift`) and ``prediction_drift`` (:mod:`.prediction_drift`),
  both :mod:`.psi`: a column's PSI above its limit, N checks in a row; for a categorical
  feature (:mod:`.categorical_drift`) its chi-square;
* ``data_quality`` (:mod:`.quality`): a feature's missing share or type mismatches rose,
  values out of range or an unseen category, a feature absent or new;
* ``label_starvation`` (:mod:`.starvation`): too many predictions expire unlabeled;
* ``estimated_degradation`` (:mod:`.estimated`): the estimated MSE (DLE / CBPE, no labels
  needed) stays above factor x its reference value;
* ``multivariate_drift`` (:mod:`.multivariate`): the PCA reconstruction error of the
  features moved away from the reference's.
"""

from driftline.agents.monitor.rules.categorical_drift import CategoricalDriftRule
from driftline.agents.monitor.rules.concept_drift import ConceptDriftRule
from driftline.agents.monitor.rules.data_drift import DataDriftRule
from driftline.agents.monitor.rules.errors import ErrorRules
from driftline.agents.monitor.rules.estimated import EstimatedDegradationRule
from driftline.agents.monitor.rules.hysteresis import Hysteresis
from driftline.agents.monitor.rules.multivariate import MultivariateDriftRule
from driftline.agents.monitor.rules.prediction_drift import PredictionDriftRule
from driftline.agents.monitor.rules.psi import PSIRule
from driftline.agents.monitor.rules.rule import Kind, Rule, Seen
from driftline.agents.monitor.rules.starvation import LabelStarvationRule
from driftline.agents.monitor.rules.subject import Subject
from driftline.agents.monitor.rules.threshold import ThresholdRule

__all__ = ["CategoricalDriftRule", "ConceptDriftRule", "DataDriftRule", "ErrorRules",
           "EstimatedDegradationRule",
           "Hysteresis", "Kind", "LabelStarvationRule", "MultivariateDriftRule", "PSIRule",
           "PredictionDriftRule", "Rule", "Seen", "Subject", "ThresholdRule"]
