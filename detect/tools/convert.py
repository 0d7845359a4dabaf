"""Convert MediaPipe's BlazeFace (short range) and FaceMesh landmark models from the mediapipe
0.10.21 wheel to ONNX (opset 13, fp32 weights), and record the original tflite interpreter's
outputs on a fixed pseudo-random input, the reference `detect/tests/onnx_vs_tflite.rs` checks
tract against.

Development time only (faceforge runs without Python):

    pip download --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_28_x86_64 mediapipe==0.10.21 -d /tmp/mp
    python3 -m venv /tmp/venv-tf && /tmp/venv-tf/bin/pip install tensorflow-cpu tf2onnx onnx
    /tmp/venv-tf/bin/python detect/tools/convert.py /tmp/mp/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl

(tested with tensorflow-cpu 2.21.0, tf2onnx 1.17.0, onnx 1.23.2, numpy 2.4.6).
"""

import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
import tensorflow as tf
import tf2onnx

WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    # wheel member -> (onnx file, tflite size in bytes)
    "mediapipe/modules/face_detection/face_detection_short_range.tflite": ("face_detection_short_range.onnx", 229714),
    "mediapipe/modules/face_landmark/face_landmark.tflite": ("face_landmark.onnx", 1242398),
}


def splitmix_uniform(seed: int, n: int) -> np.ndarray:
    """n values in [-1, 1) from SplitMix64 (the same stream as the Rust test's)."""
    out = np.empty(n, dtype=np.float32)
    state = seed
    mask = (1 << 64) - 1
    for i in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z = z ^ (z >> 31)
        out[i] = np.float32((z >> 40) / float(1 << 24) * 2.0 - 1.0)
    return out


def fp16_to_fp32(model: onnx.ModelProto) -> int:
    """Expand any fp16 initializer (tflite's DEQUANTIZE inputs) to fp32, folding its Cast."""
    changed = 0
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
            changed += 1
    return changed


def main(wheel: str) -> None:
    digest = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}")
    out_dir = ROOT / "models"
    data_dir = ROOT / "tests" / "data"
    with zipfile.ZipFile(wheel) as z:
        for member, (onnx_name, size) in MODELS.items():
            tflite_bytes = z.read(member)
            assert len(tflite_bytes) == size, f"{member}: {len(tflite_bytes)} bytes, expected {size}"
            tflite_path = Path("/tmp") / Path(member).name
            tflite_path.write_bytes(tflite_bytes)
            onnx_path = out_dir / onnx_name
            model, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=13)
            folded = fp16_to_fp32(model)
            assert all(i.data_type == onnx.TensorProto.FLOAT for i in model.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16))
            onnx.save(model, str(onnx_path))
            print(f"{member} ({hashlib.sha256(tflite_bytes).hexdigest()}) -> {onnx_path.name}, {onnx_path.stat().st_size} B, sha256 {hashlib.sha256(onnx_path.read_bytes()).hexdigest()}, {folded} fp16 initialisers expanded")

            # The reference: the original tflite on SplitMix64(seed 7) values in [-1, 1).
            interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
            interpreter.allocate_tensors()
            (inp,) = interpreter.get_input_details()
            x = splitmix_uniform(7, int(np.prod(inp["shape"]))).reshape(inp["shape"])
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            outputs = [interpreter.get_tensor(o["index"]).astype("<f4").ravel() for o in interpreter.get_output_details()]
            stem = Path(onnx_name).stem
            np.concatenate(outputs).tofile(data_dir / f"{stem}.tflite_out.f32")
            print(f"  reference outputs {[o['name'] for o in interpreter.get_output_details()]} -> tests/data/{stem}.tflite_out.f32")


if __name__ == "__main__":
    main(sys.argv[1])
