"""The ``onnx`` model kind: a model trained elsewhere (scikit-learn through skl2onnx,
XGBoost, LightGBM, PyTorch), served with onnxruntime (the extra ``driftline[onnx]``).

**The artifact is the ONNX file itself**, so it stays self-contained and any ONNX tool can
still open it: what driftline needs to know about the model is one entry of the model's
``metadata_props``, key ``driftline``, JSON::

    {"format": "driftline.onnx/1", "task": "binary", "feature_names": ["age", "city"],
     "classes": [0, 1], "output": "probabilities", "label": "label"}

A plain ``.onnx`` gets that entry when it is first wrapped, ``OnnxModel(data, task=...)``
(``driftline models register NAME model.onnx --task T``); :meth:`OnnxModel.to_bytes`
returns the file with it, and :meth:`OnnxModel.from_bytes` (the registry's load) requires
it. The entry is appended to the protobuf bytes (a repeated field may be appended to a
serialized message), so neither registering nor serving needs the ``onnx`` package.

**Inputs**, two layouts, read from the graph:

* one 2-D float input ``[N, d]``: column j is ``feature_names[j]`` (names given when the
  file is wrapped; by default the input's name when d is 1, else ``x0 .. x{d-1}``);
* one input per feature, ``[N, 1]`` (or ``[N]``), float, double, int64, int32 or string,
  named after its feature: what skl2onnx makes of a pipeline whose ColumnTransformer
  reads DataFrame columns, and the way to feed string (categorical) features to the
  encoders inside the model. ``feature_names`` are the input names (given ones may only
  reorder them: that order is the column order of array input).

**Outputs**: a regression's values are its first float output. A classifier needs its
probabilities: a float tensor ``[N, k]`` in ``classes`` order, or a sequence of maps
``{class: p}`` (skl2onnx's default ZipMap; ``options={id(clf): {"zipmap": False}}`` gives the
tensor and is faster). ``classes`` are given, or read from the graph's classifier node
(needs the ``onnx`` package, which skl2onnx installs), or ``[0, 1]`` for a binary model.
A binary model's ``predict`` is P(second class); a multiclass model's classes are names
(strings) and ``predict`` is the most probable one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from driftline.errors import ArtifactError
from driftline.models import kinds, onnx_meta
from driftline.models.onnx_meta import KEY

EXTRA = "pip install 'driftline[onnx]'"
# What an input of each ONNX element type is fed with (string: numpy str or object).
_DTYPES: dict[str, Any] = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                           "tensor(int64)": np.int64, "tensor(int32)": np.int32,
                           "tensor(string)": np.str_}


class OnnxModel:
    """An ONNX model served with onnxruntime; see the module's docs for the artifact.

    ``OnnxModel(data)`` wraps a file that already carries driftline's metadata;
    ``OnnxModel(data, task="binary", feature_names=..., classes=...)`` wraps a plain one
    (the arguments may also repeat what the metadata says, and must then agree with it).
    """

    kind = "onnx"
    takes_rows = False   # True when an input is a string column (see __init__)
    imputes = False      # a null where it takes a value is not its to fill

    def __init__(self, data: bytes, *, task: str | None = None,
                 feature_names: Sequence[str] | None = None,
                 classes: Sequence[Any] | None = None) -> None:
        self._session = _session(data)
        inputs = {i.name: i for i in self._session.get_inputs()}
        stored = self._session.get_modelmeta().custom_metadata_map.get(KEY)
        if stored is None:
            if task is None:
                raise ArtifactError("this ONNX file has no driftline metadata: say its task "
                                    f"({', '.join(kinds.TASKS)}; --task when registering)")
            facts = onnx_meta.describe(self._session, data, task, feature_names, classes)
            data = data + onnx_meta.entry(json.dumps(facts, sort_keys=True))
        else:
            facts = onnx_meta.parse(stored)
            onnx_meta.agree(facts, task=task, feature_names=feature_names, classes=classes)
        self._data = bytes(data)
        self.task: str = facts["task"]
        self.feature_names: list[str] = facts["feature_names"]
        self._output: str = facts["output"]
        self._labels: list[Any] | None = facts.get("classes")
        self._check(inputs)
        # A multiclass model's classes are names, whatever the graph's label type.
        self.classes: list[Any] | None = (
            None if self._labels is None else
            [str(c) for c in self._labels] if self.task == "multiclass" else list(self._labels))
        self._names = np.array(self.classes or [])
        self.version: int | None = None
        self.meta: dict[str, Any] = {}

    def _check(self, inputs: Mapping[str, Any]) -> None:
        """The metadata agrees with the graph (it may come from anyone's file)."""
        if self.task not in kinds.TASKS:
            raise ArtifactError(f"task {self.task!r}; expected one of {', '.join(kinds.TASKS)}")
        names = self.feature_names
        if (not isinstance(names, list) or not names or len(set(names)) != len(names)
                or not all(isinstance(n, str) and n for n in names)):
            raise ArtifactError("feature_names must be distinct non-empty strings")
        self._columns = len(inputs) > 1
        if self._columns:
            if set(names) != set(inputs):
                raise ArtifactError(f"feature_names {names} are not the model's inputs "
                                    f"{sorted(inputs)} (one input per feature)")
            self._inputs = [(n, _column_type(inputs[n]), onnx_meta.rank(inputs[n])) for n in names]
            # a string input: scored from raw rows (categories as they came), never from
            # numbers (driftline.models.losses.model_inputs)
            self.takes_rows = any(dtype is np.str_ for _, dtype, _ in self._inputs)
        elif inputs:
            (only,) = inputs.values()
            width = onnx_meta.matrix_width(only)
            if width is not None and width != len(names):
                raise ArtifactError(f"{len(names)} feature_names for input {only.name!r} of "
                                    f"{width} columns")
            self._inputs = [(only.name, _DTYPES[only.type], 2)]
        else:
            raise ArtifactError("the ONNX model has no inputs")
        outputs = {o.name: o for o in self._session.get_outputs()}
        found = outputs.get(self._output)
        kind = found.type if found is not None else None
        wanted = onnx_meta.FLOATS if self.task == "regression" else onnx_meta.FLOATS + ("seq(map",)
        if kind is None or not kind.startswith(wanted):
            raise ArtifactError(f"output {self._output!r} ({kind}) is not a "
                                + ("float tensor" if self.task == "regression" else
                                   "float tensor or sequence of maps of probabilities"))
        labels = self._labels
        width = found.shape[1] if found is not None and onnx_meta.rank(found) == 2 else None
        width = width if isinstance(width, int) else None
        if self.task == "regression":
            if labels is not None:
                raise ArtifactError("a regression has no classes")
            if width not in (1, None):
                raise ArtifactError(f"output {self._output!r} has {width} columns; a "
                                    "regression's has one value per row")
        elif (not isinstance(labels, list) or len(labels) < 2 or len(set(labels)) != len(labels)
              or not all(type(c) in (int, str) for c in labels)
              or (self.task == "binary" and len(labels) != 2)):
            raise ArtifactError(f"classes {labels!r}: a {self.task} model needs "
                                + ("2" if self.task == "binary" else "2 or more")
                                + " distinct ints or strings")
        elif width not in (len(labels), None):
            raise ArtifactError(f"output {self._output!r} has {width} columns of "
                                f"probabilities for {len(labels)} classes")

    # --- predicting ----------------------------------------------------------------

    def predict(self, X: Any) -> Any:
        """A regression's values, a binary model's P(second class), a multiclass model's
        most probable class; a number or string for one row, an array for many."""
        if self.task == "regression":
            out, one = self._run(X)
            values = np.asarray(out, dtype=float).reshape(-1)
            return float(values[0]) if one else values
        p, one = self._proba(X)
        if self.task == "binary":
            return float(p[0, 1]) if one else p[:, 1]
        picked = self._names[np.argmax(p, axis=1)]
        return str(picked[0]) if one else picked

    @property
    def predict_proba(self) -> Any:
        """A classifier's probabilities, in ``classes`` order (``{class: p}`` for a dict
        row). A regression has none: the attribute is missing, as for the linear kind,
        since callers (``ModelClient``) ask ``hasattr``."""
        if self.task == "regression":
            raise AttributeError("a regression model has no predict_proba")
        return self._predict_proba

    @property
    def predict_class(self) -> Any:
        """A binary model's 1 when P(second class) >= ``threshold``; a multiclass model's
        ``predict``."""
        if self.task == "regression":
            raise AttributeError("a regression model has no predict_class")
        return self._predict_class

    def _predict_proba(self, X: Any) -> Any:
        p, one = self._proba(X)
        if one and isinstance(X, Mapping):
            return dict(zip(self.classes or (), p[0].tolist()))
        return p[0] if one else p

    def _predict_class(self, X: Any, threshold: float = 0.5) -> Any:
        if self.task == "multiclass":
            return self.predict(X)
        p = self.predict(X)
        return int(p >= threshold) if isinstance(p, float) else (p >= threshold).astype(int)

    def _proba(self, X: Any) -> tuple[np.ndarray, bool]:
        out, one = self._run(X)
        labels = self._labels or []
        if isinstance(out, list):  # ZipMap: one {label: p} per row
            try:
                p = np.array([[row[c] for c in labels] for row in out], dtype=float)
            except KeyError as exc:
                raise ValueError(f"the model's probabilities have no class {exc}; its "
                                 f"classes are {labels}") from None
        else:
            p = np.asarray(out, dtype=float)
        if p.ndim != 2 or p.shape[1] != len(labels):
            raise ValueError(f"the model gave probabilities of shape {p.shape} for "
                             f"{len(labels)} classes")
        # Tree ensembles sum float32 leaves: a sure class comes out as 1.0000001 and the
        # others as -1.2e-7, which prediction events (probabilities in [0, 1]) refuse.
        return np.clip(p, 0.0, 1.0, out=p), one

    def _run(self, X: Any) -> tuple[Any, bool]:
        feed, one = self._feed(X)
        return self._session.run([self._output], feed)[0], one

    def _feed(self, X: Any) -> tuple[dict[str, np.ndarray], bool]:
        """Model inputs from an array (n x d or one row of d), a dict row or dict rows."""
        names = self.feature_names
        if isinstance(X, Mapping) or (isinstance(X, Sequence) and X
                                      and isinstance(X[0], Mapping)):
            one = isinstance(X, Mapping)
            rows: list[Mapping[str, Any]] = [X] if isinstance(X, Mapping) else list(X)
            missing = [n for n in names if n not in rows[0]]
            if missing:
                raise ValueError(f"missing feature(s) {', '.join(missing)}; this model needs "
                                 f"{', '.join(names)}")
            try:
                columns = [[row[n] for row in rows] for n in names]
            except KeyError as exc:
                raise ValueError(f"missing feature {exc} in a row") from None
        else:
            arr = np.asarray(X)
            one = arr.ndim == 1
            arr = arr[None, :] if one else arr
            if arr.ndim != 2 or arr.shape[1] != len(names):
                raise ValueError(f"expected {len(names)} features per row, got shape "
                                 f"{arr.shape}")
            if not self._columns:
                name, dtype, _ = self._inputs[0]
                return {name: np.ascontiguousarray(arr, dtype=dtype)}, one
            columns = list(arr.T)
        if not self._columns:
            name, dtype, _ = self._inputs[0]
            return {name: np.array(columns, dtype=dtype).T.copy()}, one
        return {name: _column(name, values, dtype, rank)
                for (name, dtype, rank), values in zip(self._inputs, columns)}, one

    # --- the artifact --------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The ONNX file, with driftline's metadata in its ``metadata_props``."""
        return self._data

    @classmethod
    def from_bytes(cls, data: bytes) -> OnnxModel:
        """An ONNX file with driftline's metadata; refuses anything else."""
        return cls(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OnnxModel):
            return NotImplemented
        return self._data == other._data

    __hash__ = None  # type: ignore[assignment]  # equal by bytes, and mutable (version)

    def __repr__(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        classes = f", {len(self.classes)} classes" if self.classes else ""
        return (f"<OnnxModel{version} {self.task}, {len(self.feature_names)} features"
                f"{classes}, {len(self._data):,} bytes>")


def _runtime() -> Any:
    # Imported here, not at the top: `import driftline` and every other kind work without
    # onnxruntime, and only loading an ONNX model needs it.
    try:
        import onnxruntime
    except ImportError:
        raise ArtifactError(f"the onnx model kind needs onnxruntime: {EXTRA}") from None
    return onnxruntime


def _session(data: bytes) -> Any:
    ort = _runtime()
    if not isinstance(data, bytes | bytearray) or not data:
        raise ArtifactError("not an ONNX model: empty or not bytes")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the exception below says what went wrong
    try:
        return ort.InferenceSession(bytes(data), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own classes, all plain Exceptions
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"not a valid ONNX model: {detail}") from None


def _column_type(node: Any) -> Any:
    rank = onnx_meta.rank(node)
    if node.type not in _DTYPES or rank not in (1, 2) or (
            rank == 2 and isinstance(node.shape[1], int) and node.shape[1] != 1):
        raise ArtifactError(f"input {node.name!r} is {node.type} {node.shape}; one input per "
                            "feature must be [N, 1] or [N] of float, double, int or string")
    return _DTYPES[node.type]


def _column(name: str, values: Any, dtype: Any, rank: int) -> np.ndarray:
    if dtype is np.str_:
        col = np.asarray(values, dtype=object)
        if not all(isinstance(v, str) for v in col):
            raise ValueError(f"feature {name!r} is a string feature; got {col[:3].tolist()}")
    else:
        try:
            col = np.asarray(values, dtype=float).astype(dtype)
        except (TypeError, ValueError):
            raise ValueError(f"feature {name!r} must be numbers") from None
    return col.reshape(-1, 1) if rank == 2 else col
