"""Convert MediaPipe's BlazeFace face detectors (.tflite) to the ONNX files maskseg ships.

The .tflite files come from the ``mediapipe`` wheel (Apache-2.0); nothing is downloaded at run
time. This script needs its own environment, kept out of the project venv because mediapipe
pins its own numpy/protobuf/OpenCV:

    python3 -m venv /work/convert-venv
    /work/convert-venv/bin/pip install mediapipe==0.10.21 tflite2onnx==0.4.1 onnx==1.22.0 \
        onnxruntime==1.32.0 ai-edge-litert==2.3.0
    /work/convert-venv/bin/python tools/convert_blazeface.py

What it does, per model:
  1. finds the .tflite in the installed mediapipe package (``mediapipe/modules/face_detection``);
  2. full range only: the wheel ships only the *sparse* full-range model, whose weights go
     through DENSIFY ops that tflite2onnx lacks. The sparse (CSR) weights are densified here
     and the DENSIFY ops removed, and its one paddings constant shared by all PAD ops is
     copied per op, giving an equivalent .tflite (checked below); tflite2onnx also lacks
     DEPTH_TO_SPACE, so a converter for it (ONNX DepthToSpace, DCR order = TF order) is
     registered before converting;
  3. converts with tflite2onnx (fp16 weights are folded to fp32, NHWC becomes NCHW);
  4. renames the outputs to ``regressors`` / ``classificators`` and makes the batch dimension
     dynamic (Reshape shapes copy dim 0, Resize uses scales instead of absolute sizes), so the
     runtime can run several tiles in one call;
  5. checks ONNX against the TFLite interpreter on noise and real face photos (max abs diff
     printed; the script fails above ``--tolerance`` pixels or 1e-4 in score), and a batch
     of N against one by one;
  6. writes ``src/maskseg/pipeline/detect/weights/blazeface_{short,full}.onnx``.

ONNX input ``input``: float32 (N, 3, S, S), RGB scaled to [-1, 1], S = 128 (short) or 192
(full). Outputs ``regressors`` (N, A, 16): box (dx, dy, w, h) then 6 keypoints (x, y), all in
input pixels relative to the anchor centre; ``classificators`` (N, A, 1): score logits.
A = 896 (short) or 2304 (full).

``tools/convert_face_landmark.py`` converts MediaPipe's face-landmark model with these helpers.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "src" / "maskseg" / "pipeline" / "detect" / "weights"
FACES = REPO.parent / "shared" / "data" / "faces"

# name -> (tflite file inside mediapipe/modules/face_detection, output file, input size)
MODELS = {
    "short": ("face_detection_short_range.tflite", "blazeface_short.onnx", 128),
    "full": ("face_detection_full_range_sparse.tflite", "blazeface_full.onnx", 192),
}


def mediapipe_model_dir(module: str = "face_detection") -> Path:
    """The folder of the installed mediapipe wheel that holds one module's models."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        sys.exit("mediapipe is not installed in this environment (pip install mediapipe==0.10.21)")
    return Path(spec.origin).parent / "modules" / module


# --------------------------------------------------------------------------- densify


def _union_values(vec) -> np.ndarray:
    """The int array behind a flatbuffer Int32/Uint16/Uint8Vector union."""
    return np.asarray(vec.values, dtype=np.int64)


def densify_csr(tensor, values: np.ndarray) -> np.ndarray:
    """Dense array of a TFLite sparse tensor stored as dense dims followed by one CSR dim.

    That is the only layout the full-range model uses (traversal order 0..n-1, no block map);
    anything else fails loudly rather than converting wrongly.
    """
    from ai_edge_litert import schema_py_generated as schema

    sp = tensor.sparsity
    dims = list(tensor.shape)
    formats = [d.format for d in sp.dimMetadata]
    if list(sp.traversalOrder) != list(range(len(dims))) or sp.blockMap is not None:
        raise NotImplementedError(f"{tensor.name}: unsupported traversal order or block map")
    if formats[:-1] != [schema.DimensionType.DENSE] * (len(dims) - 1) or formats[-1] != (
        schema.DimensionType.SPARSE_CSR
    ):
        raise NotImplementedError(f"{tensor.name}: unsupported sparsity formats {formats}")
    last = sp.dimMetadata[-1]
    segments = _union_values(last.arraySegments)
    indices = _union_values(last.arrayIndices)
    rows = int(np.prod(dims[:-1]))
    dense = np.zeros((rows, dims[-1]), dtype=values.dtype)
    for r in range(rows):
        lo, hi = segments[r], segments[r + 1]
        dense[r, indices[lo:hi]] = values[lo:hi]
    return dense.reshape(dims)


def prepare_tflite(
    tflite_bytes: bytes, *, fold_dequantize: bool = False
) -> tuple[bytes, list[str]]:
    """Rewrite a .tflite into a form tflite2onnx 0.4.1 converts; the maths stays identical.

    * every DENSIFY op is replaced by its dense constant output (the full-range model's
      weights are stored sparse);
    * a paddings constant shared by several PAD ops gets one copy per op, because
      tflite2onnx rewrites paddings in place once per consuming op (the full-range model
      shares one for all 43 PADs, which crashed the conversion);
    * ``fold_dequantize``: every fp16 -> fp32 DEQUANTIZE op of a constant is replaced by its
      fp32 output written into a constant buffer (exact: fp16 widens to fp32 without
      rounding). tflite2onnx folds such ops only where a Conv weight or bias comes out of
      them; the face-landmark model's PReLU alphas do too, and fail to convert otherwise.

    Returns the new bytes and one line per change made.
    """
    import copy

    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite_bytes, 0)
    graph = model.subgraphs[0]
    dtypes = {schema.TensorType.FLOAT16: np.float16, schema.TensorType.FLOAT32: np.float32}

    def opcode(op) -> int:
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    kept, densified = [], 0
    for op in graph.operators:
        if opcode(op) != schema.BuiltinOperator.DENSIFY:
            kept.append(op)
            continue
        src, dst = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        raw = bytes(bytearray(model.buffers[src.buffer].data))
        dense = densify_csr(src, np.frombuffer(raw, dtype=dtypes[src.type]))
        model.buffers[dst.buffer].data = np.frombuffer(dense.tobytes(), dtype=np.uint8)
        densified += 1
    graph.operators = kept

    folded = 0
    if fold_dequantize:
        kept = []
        for op in graph.operators:
            if opcode(op) != schema.BuiltinOperator.DEQUANTIZE:
                kept.append(op)
                continue
            src, dst = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
            data = model.buffers[src.buffer].data
            raw = b"" if data is None else bytes(bytearray(data))
            if src.type != schema.TensorType.FLOAT16 or dst.type != schema.TensorType.FLOAT32:
                raise NotImplementedError(f"{dst.name}: DEQUANTIZE other than fp16 -> fp32")
            if not raw:
                raise NotImplementedError(f"{dst.name}: DEQUANTIZE of a non-constant tensor")
            values = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
            if values.size != int(np.prod(dst.shape)):
                raise ValueError(f"{dst.name}: {values.size} values for shape {list(dst.shape)}")
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
            model.buffers.append(buffer)  # a buffer of its own: dst's may be shared/empty
            dst.buffer = len(model.buffers) - 1
            folded += 1
        graph.operators = kept

    seen: set[int] = set()
    unshared = 0
    for op in graph.operators:
        if opcode(op) != schema.BuiltinOperator.PAD:
            continue
        idx = int(op.inputs[1])
        if idx in seen:
            tensor = copy.deepcopy(graph.tensors[idx])
            buffer = copy.deepcopy(model.buffers[tensor.buffer])
            model.buffers.append(buffer)
            tensor.buffer = len(model.buffers) - 1
            tensor.name = tensor.name + f"_copy{unshared}".encode()
            graph.tensors.append(tensor)
            op.inputs = np.array(op.inputs, dtype=np.int32)  # unpacked arrays are read-only
            op.inputs[1] = len(graph.tensors) - 1
            unshared += 1
        seen.add(idx)

    notes = []
    if densified:
        notes.append(f"removed {densified} DENSIFY ops (CSR weights densified in the graph)")
    if folded:
        notes.append(f"folded {folded} fp16 DEQUANTIZE ops into fp32 constants")
    if unshared:
        notes.append(f"gave {unshared} PAD ops their own copy of a shared paddings constant")
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), notes


# --------------------------------------------------------------------------- tflite2onnx


def register_depth_to_space() -> None:
    """Teach tflite2onnx DEPTH_TO_SPACE (it has no converter for it in 0.4.1)."""
    import tflite
    from tflite2onnx.layout import Layout
    from tflite2onnx.op.common import Operator, OpFactory

    if tflite.BuiltinOperator.DEPTH_TO_SPACE in OpFactory.registry:
        return

    class DepthToSpace(Operator):
        TypeMapping = {tflite.BuiltinOperator.DEPTH_TO_SPACE: "DepthToSpace"}

        def __init__(self, TFactory, index):  # tflite2onnx calls it so
            super().__init__(TFactory, index)
            self.attrs["mode"] = "DCR"  # TF's depth_to_space order
            self.setInited()

        @property
        def type(self):
            return "DepthToSpace"

        def parse(self):
            op = self.tflite
            self.parseInput(0, Layout("NHWC", "NCHW"))
            self.parseOutput(0, Layout("NHWC", "NCHW"))
            option = tflite.DepthToSpaceOptions()
            opt = op.BuiltinOptions()
            option.Init(opt.Bytes, opt.Pos)
            self.attrs["blocksize"] = option.BlockSize()
            self.setParsed()

        def propagatableTensors(self):
            return []

        def transform(self):
            pass

    OpFactory.register(DepthToSpace)


def tflite_to_onnx(tflite_bytes: bytes):
    """tflite2onnx on in-memory bytes; returns the onnx ModelProto."""
    import onnx
    import tflite2onnx

    register_depth_to_space()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "model.tflite", Path(tmp) / "model.onnx"
        src.write_bytes(tflite_bytes)
        tflite2onnx.convert(str(src), str(dst))
        return onnx.load(str(dst))


def finish_graph(model, num_anchors: int):
    """Name outputs ``regressors``/``classificators`` (in that order) and make batch dynamic."""
    by_width = {o.type.tensor_type.shape.dim[2].dim_value: o.name for o in model.graph.output}
    rename_io(model, {by_width[16]: "regressors", by_width[1]: "classificators"})
    model = make_batch_dynamic(model)
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim[1:]]
    if out_dims != [num_anchors, 16]:
        raise ValueError(f"regressors shape {out_dims}, expected [{num_anchors}, 16]")
    return model


def rename_io(model, outputs: dict[str, str]) -> None:
    """Name the one image input ``input`` and the outputs ``outputs[old]``, in that order."""
    graph = model.graph
    by_name = {o.name: o for o in graph.output}
    for node in graph.node:
        node.output[:] = [outputs.get(n, n) for n in node.output]
    kept = [by_name[old] for old in outputs]
    for out in kept:
        out.name = outputs[out.name]
    del graph.output[:]
    graph.output.extend(kept)

    (inp,) = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    for node in graph.node:
        node.input[:] = ["input" if n == inp.name else n for n in node.input]
    inp.name = "input"


def make_batch_dynamic(model):
    """Batch dimension ``N`` on every input and output (Reshape shapes copy dim 0, Resize
    uses scales instead of absolute sizes); initialisers tidied; checked. Returns the model."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Reshape":
            # 0 = "copy this dim from the input" (ONNX Reshape), so N passes through
            shape = numpy_helper.to_array(inits[node.input[1]]).copy()
            if shape[0] not in (0, 1):
                raise ValueError(f"Reshape {node.name}: batch dim is {shape[0]}, expected 1")
            shape[0] = 0
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
        elif node.op_type == "Resize" and len(node.input) == 4 and node.input[3]:
            # absolute sizes pin N=1; the same resize expressed as scales does not
            sizes = numpy_helper.to_array(inits[node.input[3]]).astype(np.float32)
            in_shape = _static_shape(model, node.input[0])
            scales = sizes / np.asarray(in_shape, dtype=np.float32)
            name = node.name + "_scales"
            graph.initializer.append(numpy_helper.from_array(scales.astype(np.float32), name))
            node.input[2], node.input[3] = name, ""
    for value in list(graph.input) + list(graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    del graph.value_info[:]
    # tflite2onnx lists initializers as graph inputs (IR 6 style), which stops onnxruntime
    # from constant-folding them; drop them from the inputs, and drop unused ones.
    keep = [i for i in graph.input if i.name not in inits]
    del graph.input[:]
    graph.input.extend(keep)
    used = {name for node in graph.node for name in node.input}
    # sorted: tflite2onnx emits initializers in set order, so bytes differed run to run
    kept = sorted((i for i in graph.initializer if i.name in used), key=lambda i: i.name)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def _static_shape(model, name: str) -> list[int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        if vi.name == name:
            return [d.dim_value for d in vi.type.tensor_type.shape.dim]
    raise KeyError(name)


# --------------------------------------------------------------------------- checks


def check_images(
    size: int,
    n_faces: int,
    seed: int = 0,
    value_range: tuple[float, float] = (-1.0, 1.0),
    extra: tuple[Path, ...] = (),
) -> list[np.ndarray]:
    """HWC float inputs in ``value_range``: two noise images and a few letterboxed face
    photos (the first ``n_faces`` of ``faces/without_mask``, then the ``extra`` files)."""
    import cv2

    lo, hi = value_range
    rng = np.random.default_rng(seed)
    images = [rng.uniform(lo, hi, (size, size, 3)).astype(np.float32) for _ in range(2)]
    folder = FACES / "without_mask"
    paths = sorted(folder.glob("*.jpg"))[:n_faces] if folder.is_dir() else []
    for path in [*paths, *extra]:
        bgr = cv2.imread(str(path))
        if bgr is None:
            continue
        h, w = bgr.shape[:2]
        scale = size / max(h, w)
        small = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))))
        canvas = np.zeros((size, size, 3), np.uint8)
        y0, x0 = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
        canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
        rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
        images.append((lo + rgb.astype(np.float32) * ((hi - lo) / 255.0)).astype(np.float32))
    return images


def run_tflite(tflite_bytes: bytes, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two outputs of the TFLite interpreter for one HWC image, the wider first:
    (regressors, classificators) of BlazeFace, (landmarks, face flag) of the face mesh."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], image[None])
    interp.invoke()
    outs = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
    outs.sort(key=lambda a: -a.shape[-1])  # regressors (16 wide) first
    return outs[0], outs[1]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x.astype(np.float64), -100.0, 100.0)))


def compare(
    onnx_bytes: bytes,
    tflite_variants: dict[str, bytes],
    images,
    px_tol: float,
    coords: str = "regressors",
):
    """Max abs difference ONNX vs each TFLite variant; batch of N vs one by one.

    The first output holds coordinates in input pixels (``coords``: BlazeFace's regressors,
    the face mesh's landmarks), the second logits. Fails when coordinates differ by more
    than ``px_tol`` input pixels or scores (after the sigmoid, which is what thresholds and
    NMS see) by more than 1e-4. Raw logits are printed too: they reach about -100, so their
    float error alone can exceed 1e-3.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    failed = False
    for label, tfl in tflite_variants.items():
        d_reg = d_logit = d_score = ref_max = 0.0
        for image in images:
            ref_reg, ref_cls = run_tflite(tfl, image)
            reg, cls = sess.run(None, {"input": image.transpose(2, 0, 1)[None]})
            reg, cls = reg.reshape(ref_reg.shape), cls.reshape(ref_cls.shape)
            d_reg = max(d_reg, float(np.abs(reg - ref_reg).max()))
            d_logit = max(d_logit, float(np.abs(cls - ref_cls).max()))
            d_score = max(d_score, float(np.abs(_sigmoid(cls) - _sigmoid(ref_cls)).max()))
            ref_max = max(ref_max, float(np.abs(ref_reg).max()))
        print(
            f"    vs {label:<13}: max |diff| {coords} {d_reg:.2e} px (values up to "
            f"{ref_max:.0f}), logits {d_logit:.2e}, scores {d_score:.2e}  [{len(images)} images]"
        )
        failed |= d_reg > px_tol or d_score > 1e-4
    batch = np.stack([im.transpose(2, 0, 1) for im in images])
    reg_b, cls_b = sess.run(None, {"input": batch})
    singles = [sess.run(None, {"input": b[None]}) for b in batch]
    d_batch = max(
        float(np.abs(reg_b - np.concatenate([s[0] for s in singles])).max()),
        float(np.abs(cls_b - np.concatenate([s[1] for s in singles])).max()),
    )
    print(f"    batch of {len(batch)} vs one by one: max |diff| {d_batch:.2e}")
    if failed or d_batch > px_tol:
        sys.exit(f"    FAILED: differences above {px_tol} px / 1e-4 score")


def convert_one(name: str, src_dir: Path, out_dir: Path, n_faces: int, tolerance: float) -> None:
    tflite_name, onnx_name, size = MODELS[name]
    src = src_dir / tflite_name
    original = src.read_bytes()
    print(f"{name}: {src} ({len(original):,} bytes, sha256 {sha256(original)[:16]})")
    prepared, notes = prepare_tflite(original)
    for note in notes:
        print(f"    {note}")
    variants = {"tflite": original}
    if notes:
        variants["rewritten"] = prepared
    model = finish_graph(tflite_to_onnx(prepared), num_anchors={128: 896, 192: 2304}[size])
    onnx_bytes = model.SerializeToString()
    compare(onnx_bytes, variants, check_images(size, n_faces), tolerance)
    write_onnx(model, onnx_bytes, out_dir / onnx_name, digest_chars=16)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_onnx(model, onnx_bytes: bytes, dst: Path, digest_chars: int | None = None) -> None:
    """Write a converted model and print its size, digest and input/output shapes."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(onnx_bytes)
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(model.graph.input) + list(model.graph.output)
    }
    digest = sha256(onnx_bytes)[:digest_chars]
    print(f"    wrote {dst} ({len(onnx_bytes):,} bytes, sha256 {digest})")
    print(f"    input/outputs: {shapes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--faces", type=int, default=6, help="face photos used in the check")
    parser.add_argument("--tolerance", type=float, default=0.01, help="in input pixels")
    args = parser.parse_args()

    import mediapipe

    src_dir = mediapipe_model_dir()
    print(f"mediapipe {mediapipe.__version__}: {src_dir}")
    for name in args.models:
        convert_one(name, src_dir, args.out, args.faces, args.tolerance)


if __name__ == "__main__":
    main()
