"""Refit the mask-presence gate of an exported model, in its ONNX file.

A model shipped only as ONNX (the held-out twin: INT8, no PyTorch weights kept) can still get
a new gate: the head's input features are read from the graph itself (the tensor the head
standardises, after the encoder's INT8 arithmetic, so the head is fitted on exactly what it
will see), a fresh ``PresenceHead`` is fitted on them (``maskseg.train.gate.fit_head``), and
its weights replace the old head's. Everything before the head stays byte-identical, so the
segmentation cannot change; the head's quantize/dequantize pairs are removed (its ranges were
calibrated for the old head; the head is two small matrix products, float costs nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

MEAN, STD = "presence.mean", "presence.std"


def _graph(path: str | Path):
    import onnx

    model = onnx.load(str(path))
    subs = [n for n in model.graph.node if n.op_type == "Sub" and MEAN in n.input]
    if len(subs) != 1:
        raise ValueError(f"{path}: no mask-presence head found (export a gated model)")
    return model, subs[0]


def _feature_name(sub) -> str:
    return next(i for i in sub.input if i != MEAN)


def feature_name(path: str | Path) -> str:
    """The graph tensor the presence head standardises (its input features)."""
    return _feature_name(_graph(path)[1])


def feature_extractor(path: str | Path, size: int) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """A function from RGB crops to the head's input features (N, F), computed by the ONNX
    graph; the graph is read and its session built once, for every call."""
    import onnx
    import onnxruntime as ort

    from maskseg.pipeline.preprocess import model_input

    model, sub = _graph(path)
    name = _feature_name(sub)
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def features(images: Sequence[np.ndarray]) -> np.ndarray:
        out = [
            session.run([name], {input_name: model_input(list(images[i : i + 32]), size)})[0]
            for i in range(0, len(images), 32)
        ]
        return np.concatenate(out).astype(np.float32)

    return features


def onnx_features(path: str | Path, images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """The head's input features (N, F) for RGB crops (``feature_extractor`` for one call)."""
    return feature_extractor(path, size)(images)


def with_head(path: str | Path, head) -> bytes:
    """The ONNX model at ``path`` with ``head``'s weights (a fitted ``PresenceHead``) as its
    presence head, serialised. The head's layers must have the old ones' shapes."""
    import onnx
    from onnx import numpy_helper

    model, sub = _graph(path)
    graph = model.graph
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    # the head: every node downstream of the standardisation, up to the Min that gates
    head_nodes, frontier = [], [sub]
    while frontier:
        n = frontier.pop()
        if n in head_nodes or n.op_type == "Min":
            continue
        head_nodes.append(n)
        for o in n.output:
            frontier.extend(consumers.get(o, []))
    state = {k: v.detach().numpy() for k, v in head.state_dict().items()}
    inits = {t.name: t for t in graph.initializer}
    replace: dict[str, np.ndarray] = {MEAN: state["mean"], STD: state["std"]}
    drop: set[int] = set()
    rename: dict[str, str] = {}
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and n.output[0].startswith("presence.classifier."):
            key = n.output[0].removesuffix("_DequantizeLinear_Output")
            new = state[key.removeprefix("presence.")]
            old_shape = tuple(inits[n.input[0]].dims)
            if old_shape != new.shape:
                raise ValueError(f"{key}: new head {new.shape} != old {old_shape}")
            replace[n.output[0]] = new
            drop.add(id(n))
    for key, value in state.items():  # a float graph keeps the head's weights as they are
        name = f"presence.{key}"
        if name in inits and name not in replace and inits[name].data_type == 1:
            if tuple(inits[name].dims) != value.shape:
                raise ValueError(f"{name}: new head {value.shape} != old {tuple(inits[name].dims)}")
            replace[name] = value
    for n in head_nodes:  # activation quantize -> dequantize pairs inside the head
        if n.op_type == "QuantizeLinear":
            for dq in consumers.get(n.output[0], []):
                rename[dq.output[0]] = n.input[0]
                drop.add(id(dq))
            drop.add(id(n))
    kept = [n for n in graph.node if id(n) not in drop]
    for n in kept:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in graph.node for i in n.input}
    olds = [t for t in graph.initializer if t.name in used and t.name not in replace]
    del graph.initializer[:]
    graph.initializer.extend(olds)
    for name, value in replace.items():
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
    onnx.checker.check_model(model)
    return model.SerializeToString()
