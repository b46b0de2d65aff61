"""Model kinds: what the registry can store, load and serve.

A model kind is a class with a ``kind`` name, a ``task`` (``regression``, ``binary``,
``multiclass``), ``feature_names``, ``predict(X)`` (and ``predict_proba(X)`` and
``classes`` for a classifier), ``to_bytes()`` and a ``from_bytes(data)`` classmethod
that refuses anything but its own safe artifact (arrays and a JSON header, never a
pickle). The registry stores the kind's name in the version's metadata and asks
:func:`get` for the class when it loads the version.

Built in: ``linear`` (:class:`~driftline.models.linear.LinearModel`), ``logistic`` and
``softmax`` (:mod:`driftline.models.classifiers`); ``encoded``
(:mod:`driftline.models.encoded`: categorical encoding and imputation around any of
them); and ``onnx`` (:class:`~driftline.models.onnx.OnnxModel`: any ONNX file, served
with onnxruntime, the extra ``driftline[onnx]``). A package adds a kind without touching
driftline by naming its class under the entry-point group ``driftline.model_kinds``::

    [project.entry-points."driftline.model_kinds"]
    forest = "mypackage.forest:ForestModel"

>>> sorted(k for k in kinds() if k in BUILT_IN)
['encoded', 'linear', 'logistic', 'onnx', 'softmax']
>>> get("linear").__name__
'LinearModel'
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import zipfile
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np

from driftline.errors import ArtifactError

log = logging.getLogger(__name__)

GROUP = "driftline.model_kinds"
TASKS = ("regression", "binary", "multiclass")
BUILT_IN = {
    "linear": "driftline.models.linear:LinearModel",
    "logistic": "driftline.models.classifiers:LogisticModel",
    "softmax": "driftline.models.classifiers:SoftmaxModel",
    "encoded": "driftline.models.encoded:EncodedModel",  # a preprocessing step around one
    "onnx": "driftline.models.onnx:OnnxModel",
}
NPZ_KINDS = ("linear", "logistic", "softmax", "encoded")  # their files are .npz


@runtime_checkable
class ModelKind(Protocol):
    """What every stored model is. ``version`` and ``meta`` are set by the registry."""

    kind: str
    task: str
    feature_names: list[str]
    version: int | None
    meta: dict[str, Any]

    def predict(self, X: Any) -> Any:
        """A regression's values, a binary classifier's probabilities of class 1, a
        multiclass model's classes; for an array of rows, a dict row or a list of them."""
        ...

    def to_bytes(self) -> bytes: ...

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelKind: ...


@runtime_checkable
class Classifier(ModelKind, Protocol):
    classes: list[Any]

    def predict_proba(self, X: Any) -> Any:
        """One probability per class, in ``classes`` order (a dict row: ``{class: p}``)."""
        ...


def kinds() -> dict[str, str]:
    """Every kind this installation knows: name -> ``module:Class``. An entry point may
    not shadow a built-in kind (a typo'd package must not replace ``linear``)."""
    found = dict(BUILT_IN)
    for point in entry_points(group=GROUP):
        if point.name in BUILT_IN:
            log.warning("model kind %r from %s ignored: it is built in", point.name,
                        point.value)
            continue
        found[point.name] = point.value
    return found


def get(kind: str) -> type[Any]:
    """The class of a kind; an unknown kind is an :class:`ArtifactError` naming the known.
    A built-in kind is found without scanning the installed packages' entry points (~4 ms
    that every registry load and ``ModelClient`` swap paid)."""
    target = BUILT_IN.get(kind)
    if target is None:
        known = kinds()
        target = known.get(kind)
    if target is None:
        raise ArtifactError(f"unknown model kind {kind!r}; this installation knows "
                            f"{', '.join(sorted(known))} (a package adds one under the "
                            f"entry-point group {GROUP!r})")
    module, _, name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ArtifactError(f"model kind {kind!r} ({target}) cannot be imported: {exc}") \
            from None
    if not hasattr(cls, "from_bytes"):
        raise ArtifactError(f"model kind {kind!r} ({target}) has no from_bytes")
    return cls  # type: ignore[no-any-return]


def kind_of(model: Any) -> str:
    """A model's kind name, checked to be one :func:`get` finds again."""
    kind = getattr(model, "kind", None)
    if not isinstance(kind, str) or not isinstance(model, ModelKind):
        raise ArtifactError(f"{type(model).__name__} is not a model kind (it needs kind, "
                            f"task, feature_names, predict, to_bytes and from_bytes)")
    if get(kind) is not type(model):
        raise ArtifactError(f"{type(model).__name__} says it is kind {kind!r}, which is "
                            f"{kinds()[kind]}")
    return kind


def load(kind: str, artifact: bytes) -> Any:
    return get(kind).from_bytes(artifact)


def from_file(data: bytes, *, task: str | None = None,
              feature_names: Sequence[str] | None = None,
              classes: Sequence[Any] | None = None) -> Any:
    """A model from a file, what ``driftline models register`` takes: an ``.npz`` of a
    built-in kind (its kind read from its ``format``, ``driftline.<kind>/N``) or an ONNX
    file (:class:`~driftline.models.onnx.OnnxModel`; a plain one needs ``task``, and may
    be given ``feature_names`` and ``classes``). For an ``.npz`` the arguments may only
    repeat what the file says."""
    if data[:1] == b"\x08":  # an ONNX ModelProto starts with its ir_version (field 1)
        return get("onnx")(data, task=task, feature_names=feature_names, classes=classes)
    if data[:2] != b"PK":  # an .npz is a zip
        raise ArtifactError("malformed artifact: neither an .npz of a built-in kind (a zip) "
                            "nor an ONNX file (a protobuf ModelProto)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            fmt = npz["format"] if "format" in npz.files else None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"malformed artifact (neither an .npz of a driftline model kind "
                            f"nor an ONNX file): {exc}") from None
    name = str(fmt) if fmt is not None and fmt.dtype.kind == "U" else ""
    kind = name.removeprefix("driftline.").partition("/")[0]
    if not name.startswith("driftline.") or kind not in NPZ_KINDS:
        raise ArtifactError(f"unknown artifact format {name or 'none'!r}; expected one of "
                            + ", ".join(f"driftline.{k}/1" for k in NPZ_KINDS))
    model = load(kind, data)
    given = {"task": task, "feature_names": feature_names, "classes": classes}
    for what, value in given.items():
        if value is None:
            continue
        found = getattr(model, what, None)
        same = value == found if what == "task" else list(value) == list(found or ())
        if not same:
            raise ArtifactError(f"{what} {value!r} disagrees with the {kind} model in the "
                                f"file ({found!r})")
    return model


# --- the artifact: .npz arrays plus a JSON header ------------------------------------


def write_npz(fmt: str, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    parts = {"format": np.array(fmt), "header": np.array(json.dumps(header, sort_keys=True)),
             **arrays}
    np.savez(buf, **parts)  # type: ignore[arg-type]  # numpy's stub misreads **kwargs
    return buf.getvalue()


def open_npz(data: bytes, what: str, required: AbstractSet[str],
             optional: AbstractSet[str] = frozenset()) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``, read with ``allow_pickle=False``: exactly ``required``
    and any of ``optional``, else an :class:`ArtifactError` naming ``what`` it is not."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = set(npz.files)
            if not required <= names or names - required - optional:
                raise ArtifactError(f"not a {what}: arrays {sorted(names)}, expected "
                                    f"{sorted(required)}"
                                    + (f" and optionally {sorted(optional)}" if optional
                                       else ""))
            return {n: npz[n] for n in names}
    except ArtifactError:
        raise
    except ValueError as exc:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise ArtifactError(f"unsafe or malformed artifact: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ArtifactError(f"malformed artifact (not an .npz): {exc}") from None


def read_npz(data: bytes, fmt: str, required: AbstractSet[str],
             optional: AbstractSet[str] = frozenset()
             ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, numeric arrays) of an artifact written by :func:`write_npz`; refuses
    pickled (object) arrays, another format, unknown or missing parts."""
    arrays = open_npz(data, f"{fmt} artifact", set(required) | {"format", "header"}, optional)
    found = arrays.pop("format")
    if found.dtype.kind != "U" or str(found) != fmt:
        raise ArtifactError(f"artifact format {found!r}, expected {fmt!r}")
    raw = arrays.pop("header")
    try:
        header = json.loads(str(raw)) if raw.dtype.kind == "U" else None
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise ArtifactError(f"{fmt}: the header is not a JSON object")
    for name, arr in arrays.items():
        if arr.dtype.kind not in "fiu":  # (u: an inner artifact's bytes)
            raise ArtifactError(f"{fmt}: {name} must be numeric, got dtype {arr.dtype}")
    return header, arrays
