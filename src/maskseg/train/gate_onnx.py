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


def _graph(path: str | Path | bytes):
    import onnx

    model = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(str(path))
    subs = [n for n in model.graph.node if n.op_type == "Sub" and MEAN in n.input]
    if len(subs) != 1:
        raise ValueError(f"{path}: no mask-presence head found (export a gated model)")
    return model, subs[0]


def _feature_name(sub) -> str:
    return next(i for i in sub.input if i != MEAN)


def feature_name(path: str | Path | bytes) -> str:
    """The graph tensor the presence head standardises (its input features)."""
    return _feature_name(_graph(path)[1])


def feature_extractor(
    path: str | Path | bytes, size: int
) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """A function from RGB crops to the head's input features (N, F), computed by the ONNX
    graph (a file, or a serialised model); the graph is read and its session built once."""
    import onnx

    from maskseg.pipeline.backends.onnx import open_session, session_options
    from maskseg.pipeline.preprocess import model_input

    model, sub = _graph(path)
    name = _feature_name(sub)
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    # the features the gate will read at run time: the product's session settings (exact INT8
    # products on CPUs without VNNI, maskseg.pipeline.backends.onnx)
    session = open_session(model.SerializeToString(), session_options())
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


def _consumers(graph) -> dict[str, list]:
    """Tensor name -> the nodes that read it."""
    out: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _head_nodes(sub, consumers: dict[str, list]) -> list:
    """The presence head: every node downstream of its standardisation (``sub``), up to the
    Min that gates the logits."""
    head_nodes, frontier = [], [sub]
    while frontier:
        n = frontier.pop()
        if n in head_nodes or n.op_type == "Min":
            continue
        head_nodes.append(n)
        for o in n.output:
            frontier.extend(consumers.get(o, []))
    return head_nodes


def with_head(path: str | Path | bytes, head) -> bytes:
    """The ONNX model at ``path`` with ``head``'s weights (a fitted ``PresenceHead``) as its
    presence head, serialised. A ``pooled`` head's layers must have the old ones' shapes; a
    ``masked`` head is built in the graph (``with_masked_features``)."""
    import onnx
    from onnx import numpy_helper

    if getattr(head, "kind", "pooled") == "masked" and needs_masked_build(path, head):
        return with_masked_features(path, head)

    model, sub = _graph(path)
    graph = model.graph
    consumers = _consumers(graph)
    head_nodes = _head_nodes(sub, consumers)
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


def needs_masked_build(path: str | Path | bytes, head) -> bool:
    """Whether a masked ``head`` must be built into the graph (its head reads other features,
    or was built there before) rather than have its weights replaced in place (a graph
    exported from a model with a masked head)."""
    model, sub = _graph(path)
    if any(n.output[0] == "presence.masked.features" for n in model.graph.node):
        return True
    mean = next(t for t in model.graph.initializer if t.name == MEAN)
    return int(np.prod(mean.dims)) != head.mean.numel()


def with_masked_features(path: str | Path | bytes, head, size: int | None = None) -> bytes:
    """The ONNX model at ``path`` with a head that reads ``masked`` features
    (``maskseg.models.presence``), ``head``'s weights in float, serialised.

    The new features are built in the graph from its own tensors: the encoder maps the old
    head averages (the inputs of its ReduceMean nodes, in order) and the decoder's logits
    (the Min's other input), exactly as ``PresenceHead.features`` computes them at ``size``
    (pooling with constant kernels). Everything before the head is kept as it is, so the
    segmentation cannot change; a model whose head already reads ``masked`` features gets
    its head replaced. ``size``: the input size (None: the graph's, which a gated model fixes).
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from maskseg.models.presence import EPS, GRID

    if head.kind != "masked":
        raise ValueError("with_masked_features installs a head of kind 'masked'")
    model, sub = _graph(path)
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)

    def source(name: str):  # the node behind quantize/dequantize pairs
        n = producer[name]
        while n.op_type in ("DequantizeLinear", "QuantizeLinear"):
            n = producer[n.input[0]]
        return n

    where = "the ONNX model" if isinstance(path, bytes) else str(path)
    feat = _feature_name(sub)
    concat = source(feat)
    if concat.output[0] == "presence.masked.features":  # built here before: rebuild it
        feat = concat.input[0]
        concat = source(feat)
    if concat.op_type != "Concat":
        raise ValueError(f"{where}: the head's features are not one Concat ({concat.op_type})")
    parts = [source(i) for i in concat.input]
    maps = [n.input[0] for n in parts if n.op_type == "ReduceMean"]
    if not maps:
        raise ValueError(f"{where}: no encoder means found in the head's features")
    head_nodes = _head_nodes(sub, consumers)  # the old head
    outs = {o for n in head_nodes for o in n.output}
    gate_min = next(n for n in graph.node if n.op_type == "Min" and any(i in outs for i in n.input))
    logits = next(i for i in gate_min.input if i not in outs)
    old_gate = next(i for i in gate_min.input if i in outs)
    if maps[0] == feat or len(set(maps)) != len(maps):
        raise ValueError(f"{where}: unexpected head features")
    if size is None:
        dims = graph.input[0].type.tensor_type.shape.dim
        size = int(dims[2].dim_value) if len(dims) == 4 else 0
        if size <= 0:
            raise ValueError(f"{where}: the input size is not fixed in the graph; give size")
    # the maps' sizes at the model's input size, from one run of the graph
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in [*maps, logits]:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, size, size), np.float32)
    got = session.run([*maps, logits], {session.get_inputs()[0].name: x})
    shapes = [g.shape[-2:] for g in got]
    (lh, lw) = shapes[-1]

    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    axes = const("presence.masked.axes", np.array([2, 3], np.int64))
    eps = const("presence.masked.eps", np.array([EPS], np.float32))
    p = "presence.masked.p"
    nodes.append(helper.make_node("Sigmoid", [logits], [p]))

    def pool(name: str, h: int, w: int) -> str:
        if lh % h or lw % w:
            raise ValueError(f"{where}: a {h} x {w} map does not divide the {lh} x {lw} logits")
        kernel = [lh // h, lw // w]
        nodes.append(
            helper.make_node("AveragePool", [p], [name], kernel_shape=kernel, strides=kernel)
        )
        return name

    new_parts = []
    for k, (m, (h, w)) in enumerate(zip(maps, shapes[:-1], strict=True)):
        pk = pool(f"presence.masked.p{k}", int(h), int(w))
        pre = f"presence.masked.{k}"
        nodes += [
            helper.make_node("Mul", [m, pk], [f"{pre}.mul"]),
            helper.make_node("ReduceMean", [f"{pre}.mul", axes], [f"{pre}.num"], keepdims=0),
            helper.make_node("ReduceMean", [pk, axes], [f"{pre}.share"], keepdims=0),
            helper.make_node("Add", [f"{pre}.share", eps], [f"{pre}.den"]),
            helper.make_node("Div", [f"{pre}.num", f"{pre}.den"], [pre]),
        ]
        new_parts.append(pre)
    grid = pool("presence.masked.grid4", GRID, GRID)
    nodes.append(helper.make_node("Flatten", [grid], ["presence.masked.grid"], axis=1))
    new_parts.append("presence.masked.grid")
    features = "presence.masked.features"
    nodes.append(helper.make_node("Concat", [feat, *new_parts], [features], axis=1))
    # the new head, in float: standardise, then the classifier's Linear layers
    state = {k: v.detach().numpy().astype(np.float32) for k, v in head.state_dict().items()}
    nodes += [
        helper.make_node("Sub", [features, const(MEAN, state["mean"])], ["presence.z0"]),
        helper.make_node("Div", ["presence.z0", const(STD, state["std"])], ["presence.z"]),
    ]
    linears = sorted({k.rsplit(".", 1)[0] for k in state if k.startswith("classifier")})
    h_name = "presence.z"
    for j, layer in enumerate(linears):
        # new names: an INT8 graph's old head may leave tensors named presence.classifier.*
        w_name = const(f"presence.masked.{layer}.weight", state[f"{layer}.weight"])
        b_name = const(f"presence.masked.{layer}.bias", state[f"{layer}.bias"])
        out = f"presence.{layer}.out"
        nodes.append(helper.make_node("Gemm", [h_name, w_name, b_name], [out], transB=1))
        if j < len(linears) - 1:
            nodes.append(helper.make_node("Relu", [out], [out + ".relu"]))
            out += ".relu"
        h_name = out
    nodes.append(helper.make_node("Unsqueeze", [h_name, axes], ["presence.gate"]))
    for k, i in enumerate(gate_min.input):
        if i == old_gate:
            gate_min.input[k] = "presence.gate"
    drop = {id(n) for n in head_nodes}
    drop |= {id(n) for n in graph.node if n.output[0].startswith("presence.masked.")}
    kept = [n for n in graph.node if id(n) not in drop]
    at = next(k for k, n in enumerate(kept) if n is gate_min)
    kept = kept[:at] + nodes + kept[at:]
    wanted = {o.name for o in graph.output}
    while True:  # drop what only the old head used (its weights' dequantize nodes)
        used = {i for n in kept for i in n.input} | wanted
        alive = [n for n in kept if any(o in used for o in n.output)]
        if len(alive) == len(kept):
            break
        kept = alive
    del graph.node[:]
    graph.node.extend(kept)
    new = {t.name for t in inits}
    olds = [t for t in graph.initializer if t.name in used and t.name not in new]
    del graph.initializer[:]
    graph.initializer.extend(olds + inits)
    _set_presence_features(model, "masked")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _set_presence_features(model, kind: str) -> None:
    """The model's stored config says which features its head reads."""
    import json

    for p in model.metadata_props:
        if p.key == "config":
            cfg = json.loads(p.value)
            cfg.setdefault("model", {})["presence_features"] = kind
            p.value = json.dumps(cfg)
