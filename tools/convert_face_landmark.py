"""Convert MediaPipe's face-landmark model (Face Mesh, 468 points) to the ONNX file maskseg ships.

The .tflite comes from the ``mediapipe`` wheel (Apache-2.0), as BlazeFace's do; this script
shares the helpers of ``tools/convert_blazeface.py`` and runs in the same environment:

    python3 -m venv /work/convert-venv
    /work/convert-venv/bin/pip install mediapipe==0.10.21 tflite2onnx==0.4.1 onnx==1.22.0 \
        onnxruntime==1.32.0 ai-edge-litert==2.3.0
    /work/convert-venv/bin/python tools/convert_face_landmark.py

What it does:
  1. finds ``mediapipe/modules/face_landmark/face_landmark.tflite`` (the model without
     attention: 192 x 192 input, fp16 weights);
  2. folds every fp16 DEQUANTIZE op into an fp32 constant (tflite2onnx 0.4.1 fails on the
     model as shipped: the PReLU alphas come out of DEQUANTIZE ops, which it folds only for
     Conv weights); the rewritten .tflite is checked against the original below;
  3. converts with tflite2onnx (NHWC becomes NCHW; the graph has no Transpose left);
  4. flattens the two 1 x 1 convolution outputs to ``landmarks`` (N, 1404) and
     ``face_flag`` (N, 1), names the input ``input`` and makes the batch dimension dynamic;
  5. checks ONNX against the TFLite interpreter on noise, face photos and the two example
     photos (max abs diff printed; fails above ``--tolerance`` input pixels or 1e-4 in the
     sigmoid of the flag), and a batch of N against one by one;
  6. writes ``src/maskseg/pipeline/detect/weights/face_landmark.onnx``;
  7. runs maskseg's landmark stage (``maskseg.pipeline.detect.landmarks``: BlazeFace, ROI,
     crop, the new file, mapping back) beside MediaPipe's own FaceMesh graph on the example
     photos and face photos, with the crop scaled to [0, 1] (what maskseg does) and to
     [-1, 1]: mean and max distance between the two meshes, in pixels and in inter-ocular
     distances. Fails when [-1, 1] agrees better or [0, 1] is off by more than
     ``--agreement`` inter-ocular distances on average (the detections differ a little, so
     the meshes cannot agree exactly).

ONNX input ``input``: float32 (N, 3, 192, 192), RGB scaled to [0, 1] (MediaPipe's
``face_landmark_cpu.pbtxt``: ImageToTensorCalculator, ``output_tensor_float_range`` 0..1)
of the rotated face ROI. Outputs:

* ``landmarks`` (N, 1404): 468 points x (x, y, z). x, y are in input pixels (0..192, the
  same frame as the crop's corners: MediaPipe divides them by 192 and maps them through the
  ROI); z is depth in the same pixel units, relative to the face's centre (smaller = nearer
  the camera), which MediaPipe scales by the ROI width like x.
* ``face_flag`` (N, 1): a logit; MediaPipe's face-presence score is its sigmoid, and the
  graph drops the landmarks when the score is below 0.5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from convert_blazeface import (  # noqa: E402  (a sibling script, not a package)
    FACES,
    OUT_DIR,
    REPO,
    check_images,
    compare,
    make_batch_dynamic,
    mediapipe_model_dir,
    prepare_tflite,
    rename_io,
    sha256,
    tflite_to_onnx,
    write_onnx,
)

TFLITE_NAME = "face_landmark.tflite"
ONNX_NAME = "face_landmark.onnx"
INPUT_SIZE = 192
NUM_LANDMARKS = 468
EXAMPLES = (REPO / "examples" / "face.jpg", REPO / "examples" / "astronaut_masked.jpg")


def prelu_as_convs(model) -> int:
    """Rewrite every PRelu(x, a) (a per channel) as Relu(x) + Conv(Relu(Conv(x, -1)), -a).

    Both convolutions are 1 x 1 depthwise (one weight per channel, no bias), so the result
    is the same numbers: -x and Relu are exact, (-a) * (-x) rounds as a * x does, and one
    term of the sum is zero. Why: onnxruntime's CPU PRelu is a generic broadcasting kernel,
    and onnxruntime cannot keep its blocked (NCHWc) convolution layout across it, so the
    23 PReLUs cost 7 of the 10 ms per face; as convolutions and Relu they stay in NCHWc and
    the model runs about three times faster. Returns how many PReLUs were rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        x, alpha_name = node.input
        (y,) = node.output
        alpha = numpy_helper.to_array(inits[alpha_name]).astype(np.float32)
        channels = alpha.size
        if alpha.shape not in ((1, channels, 1, 1), (channels, 1, 1)):
            raise ValueError(f"{node.name}: PRelu slope of shape {alpha.shape}, not per channel")
        p = node.name or y
        graph.initializer.extend(
            [
                numpy_helper.from_array(
                    np.full((channels, 1, 1, 1), -1.0, np.float32), p + "_neg1"
                ),
                numpy_helper.from_array(-alpha.reshape(channels, 1, 1, 1), p + "_negslope"),
            ]
        )
        dw = {"group": channels, "kernel_shape": [1, 1]}
        nodes += [
            helper.make_node("Conv", [x, p + "_neg1"], [p + "_negx"], name=p + "_negate", **dw),
            helper.make_node("Relu", [p + "_negx"], [p + "_relu_negx"], name=p + "_relu_neg"),
            helper.make_node(
                "Conv",
                [p + "_relu_negx", p + "_negslope"],
                [p + "_neg_part"],
                name=p + "_slope",
                **dw,
            ),
            helper.make_node("Relu", [x], [p + "_pos_part"], name=p + "_relu_pos"),
            helper.make_node("Add", [p + "_pos_part", p + "_neg_part"], [y], name=p + "_sum"),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def finish_landmark_graph(model):
    """Outputs flattened to ``landmarks`` (N, 1404) and ``face_flag`` (N, 1), in that order;
    input ``input``; PReLUs as convolutions (``prelu_as_convs``); dynamic batch."""
    from onnx import TensorProto, helper

    graph = model.graph
    print(f"    rewrote {prelu_as_convs(model)} PRelu ops as depthwise 1x1 convolutions + Relu")
    by_channels = {o.type.tensor_type.shape.dim[1].dim_value: o.name for o in graph.output}
    if sorted(by_channels) != [1, NUM_LANDMARKS * 3]:
        raise ValueError(f"unexpected output channels {sorted(by_channels)}")
    flat = {NUM_LANDMARKS * 3: "landmarks", 1: "face_flag"}
    rename_io(model, {by_channels[c]: flat[c] + "_nchw" for c in (NUM_LANDMARKS * 3, 1)})
    del graph.output[:]
    for channels in (NUM_LANDMARKS * 3, 1):
        name = flat[channels]
        graph.node.append(
            helper.make_node("Flatten", [name + "_nchw"], [name], name=name + "_flatten", axis=1)
        )
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, channels]))
    return make_batch_dynamic(model)


def mediapipe_agreement(onnx_path: Path, paths: list[Path], limit: float) -> None:
    """Step 7 of the module docstring."""
    import mediapipe as mp

    sys.path.insert(0, str(REPO / "src"))
    from maskseg.io import read_image
    from maskseg.pipeline.detect import get_detector
    from maskseg.pipeline.detect.landmarks import (
        LEFT_EYE_OUTER,
        RIGHT_EYE_OUTER,
        FaceLandmarker,
        crop_roi,
        decode_landmarks,
    )

    detector = get_detector("blazeface", threads=1)
    landmarker = FaceLandmarker(onnx_path, threads=1)
    errors: dict[str, list[tuple[float, float]]] = {"[0, 1]": [], "[-1, 1]": []}
    solution = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=False)
    with solution as mesh:
        for path in paths:
            image = read_image(path)
            h, w = image.shape[:2]
            found = mesh.process(image).multi_face_landmarks
            faces = detector.detect(image)[:1]
            if not found or not len(faces):
                print(f"    {path.name}: no face (mediapipe {bool(found)}, maskseg {len(faces)})")
                continue
            ref = np.array([[p.x * w, p.y * h] for p in found[0].landmark])
            iod = float(np.linalg.norm(ref[RIGHT_EYE_OUTER] - ref[LEFT_EYE_OUTER]))
            ours = landmarker.for_detections(image, faces)[0]
            rois = landmarker.rois(faces)
            crop = np.stack([crop_roi(image, roi) for roi in rois]).astype(np.float32)
            crop = np.ascontiguousarray((crop / 127.5 - 1.0).transpose(0, 3, 1, 2))
            lm, flag = landmarker._session.run(None, {"input": crop})
            signed = decode_landmarks(lm, flag, rois)[0]
            for key, face in (("[0, 1]", ours), ("[-1, 1]", signed)):
                dist = np.linalg.norm(face.points - ref, axis=1)
                errors[key].append((float(dist.mean()) / iod, float(dist.max()) / iod))
    for key, rows in errors.items():
        arr = np.array(rows).reshape(-1, 2)
        print(
            f"    vs mediapipe FaceMesh, input scaled to {key:<7}: mean distance "
            f"{arr[:, 0].mean():.4f} inter-ocular distances (worst photo {arr[:, 0].max():.4f}), "
            f"max {arr[:, 1].max():.4f}  [{len(arr)} photos]"
        )
    mean01 = np.mean([r[0] for r in errors["[0, 1]"]])
    if (
        not errors["[0, 1]"]
        or mean01 > limit
        or mean01 >= np.mean([r[0] for r in errors["[-1, 1]"]])
    ):
        sys.exit("    FAILED: maskseg's landmark stage does not match MediaPipe's graph")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--faces", type=int, default=6, help="face photos used in the check")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="in input pixels")
    parser.add_argument(
        "--agreement", type=float, default=0.05, help="step 7, in inter-ocular distances"
    )
    args = parser.parse_args()

    import mediapipe

    src = mediapipe_model_dir("face_landmark") / TFLITE_NAME
    print(f"mediapipe {mediapipe.__version__}: {src}")
    original = src.read_bytes()
    print(f"    {len(original):,} bytes, sha256 {sha256(original)}")
    prepared, notes = prepare_tflite(original, fold_dequantize=True)
    for note in notes:
        print(f"    {note}")
    model = finish_landmark_graph(tflite_to_onnx(prepared))
    onnx_bytes = model.SerializeToString()
    images = check_images(INPUT_SIZE, args.faces, value_range=(0.0, 1.0), extra=EXAMPLES)
    compare(
        onnx_bytes,
        {"tflite": original, "rewritten": prepared},
        images,
        args.tolerance,
        coords="landmarks",
    )
    dst = args.out / ONNX_NAME
    write_onnx(model, onnx_bytes, dst)
    faces = sorted((FACES / "without_mask").glob("*.jpg"))[: args.faces]
    mediapipe_agreement(dst, [*EXAMPLES, *faces], args.agreement)


if __name__ == "__main__":
    main()
