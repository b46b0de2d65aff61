"""The ``onnx`` kind's file format (:mod:`driftline.models.onnx`): driftline's facts about
an ONNX model, kept in the model's own ``metadata_props`` (key ``driftline``, JSON): read,
described from a plain file's graph, and written by appending one protobuf field, so that
neither registering nor serving needs the ``onnx`` package.

>>> _varint(300).hex(), entry("{}")[:2].hex()
('ac02', '720f')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from driftline.errors import ArtifactError

FORMAT = "driftline.onnx/1"
KEY = "driftline"  # the metadata_props entry
FLOATS = ("tensor(float)", "tensor(double)")


def parse(stored: str) -> dict[str, Any]:
    """The facts stored in a file (the graph checks them: :class:`OnnxModel`)."""
    try:
        facts = json.loads(stored)
    except ValueError:
        facts = None
    if not isinstance(facts, dict) or facts.get("format") != FORMAT:
        raise ArtifactError(f"the ONNX file's {KEY!r} metadata is not a {FORMAT} JSON object")
    for key in ("task", "feature_names", "output"):
        if key not in facts:
            raise ArtifactError(f"the ONNX file's {KEY!r} metadata has no {key!r}")
    if not isinstance(facts["output"], str):
        raise ArtifactError("the output must be an output's name")
    return facts


def describe(session: Any, data: bytes, task: str, feature_names: Sequence[str] | None,
              classes: Sequence[Any] | None) -> dict[str, Any]:
    """driftline's facts about a plain ONNX file, read from its graph and the arguments."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if feature_names is not None:
        names = list(feature_names)
    elif len(inputs) > 1:
        names = [i.name for i in inputs]
    else:
        width = matrix_width(inputs[0])
        if width is None:
            raise ArtifactError(f"input {inputs[0].name!r} has {inputs[0].shape[1]!r} columns: "
                                "name the features (--features a,b,c)")
        names = [inputs[0].name] if width == 1 else [f"x{j}" for j in range(width)]
    facts: dict[str, Any] = {"format": FORMAT, "task": task, "feature_names": names}
    label = next((o.name for o in outputs if o.type in ("tensor(int64)", "tensor(string)")
                  and len(o.shape or ()) == 1), None)
    if task == "regression":
        output = next((o.name for o in outputs if o.type in FLOATS), None)
    else:
        output = next((o.name for o in outputs if o.type.startswith("seq(map")
                       or (o.type in FLOATS and len(o.shape or ()) == 2)), None)
        facts["label"] = label
        found = list(classes) if classes is not None else _graph_classes(data)
        if found is None and task == "binary":
            found = [0, 1]
        if found is None:
            raise ArtifactError("name the classes (--classes a,b,c): no classifier node "
                                "in the graph says them, or the onnx package is missing")
        facts["classes"] = found
    if output is None:
        got = ", ".join(f"{o.name} {o.type}" for o in outputs)
        raise ArtifactError(f"no output fits a {task} model (outputs: {got}); a regression "
                            "needs a float tensor, a classifier its probabilities")
    facts["output"] = output
    return facts


def _graph_classes(data: bytes) -> list[Any] | None:
    """The class labels of the graph's last classifier node (skl2onnx's ZipMap,
    TreeEnsembleClassifier, LinearClassifier...), when the onnx package can say."""
    try:
        import onnx
    except ImportError:
        return None
    found: list[Any] | None = None
    for node in onnx.load_from_string(data).graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_int64s" and attr.ints:
                found = [int(c) for c in attr.ints]
            elif attr.name == "classlabels_strings" and attr.strings:
                found = [c.decode() for c in attr.strings]
    return found


def rank(node: Any) -> int:
    return len(node.shape or ())


def matrix_width(node: Any) -> int | None:
    if node.type not in FLOATS or rank(node) != 2:
        raise ArtifactError(f"input {node.name!r} is {node.type} {node.shape}; one input "
                            "must be a 2-D float tensor [N, d]")
    return node.shape[1] if isinstance(node.shape[1], int) else None


def agree(facts: dict[str, Any], **given: Any) -> None:
    """Arguments given with a file that has driftline's metadata may only repeat it."""
    for name, value in given.items():
        if value is not None and _listed(value) != _listed(facts.get(name)):
            raise ArtifactError(f"{name} {value!r} disagrees with the file's driftline "
                                f"metadata ({facts.get(name)!r})")


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value or ())


def entry(value: str) -> bytes:
    """A ``metadata_props`` entry ``driftline: value`` as protobuf bytes: ModelProto field
    14, a StringStringEntryProto of key (1) and value (2). Appended to a serialized
    model, it adds one entry (protobuf merges a repeated field by appending)."""
    pair = _field(1, KEY.encode()) + _field(2, value.encode())
    return _field(14, pair)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)
