"""Run MediaPipe 0.10.21's own graphs (face detection, short range; face mesh in static-image
mode, 468 points) on the committed portraits and write what they found as the fixture
`detect/tests/data/mediapipe_reference.json`, which `detect/tests/against_mediapipe.rs` checks
faceforge's Rust pipeline against.

Development time only:

    python3 -m venv /tmp/venv-mp && /tmp/venv-mp/bin/pip install mediapipe==0.10.21 pillow
    /tmp/venv-mp/bin/python detect/tools/make_fixtures.py

The inputs:
- `examples/obama.jpg`, `examples/biden.jpg` as Pillow decodes them. Rust's JPEG decoder differs
  from libjpeg in under 1 % of the values (by at most 3 levels), so these carry a decoder term;
- lossless PNG copies that both sides read identically, written here into `tests/data/`:
  `obama_half.png` (the portrait halved, Lanczos) and `biden_face.png` (the top 970 × 970 of the
  other portrait, halved);
- `obama_half.png` turned by ±30° in plane, by `turn` below, which the Rust test repeats
  operation for operation (sin 30° = 0.5 and cos 30° = √0.75 exactly; f64; ties up) and
  checks by the FNV-1a hash of the pixels recorded here.
"""

import json
import math
from pathlib import Path

import mediapipe as mp
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "detect" / "tests" / "data"


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def turn(rgb: np.ndarray, sign: int) -> np.ndarray:
    """Turned by sign × 30° (clockwise on screen for +) about the centre onto a canvas that holds
    all of it; bilinear at pixel centres, black outside, rounded half up."""
    h, w = rgb.shape[:2]
    s, c = 0.5 * sign, math.sqrt(0.75)
    ow, oh = math.ceil(w * c + h * abs(s)), math.ceil(w * abs(s) + h * c)
    oy, ox = np.mgrid[0:oh, 0:ow].astype(np.float64)
    x = ox + 0.5 - ow / 2.0
    y = oy + 0.5 - oh / 2.0
    sx = c * x + s * y + w / 2.0 - 0.5
    sy = -s * x + c * y + h / 2.0 - 0.5
    x0, y0 = np.floor(sx), np.floor(sy)
    ax, ay = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(int), y0.astype(int)
    src = rgb.astype(np.float64)

    def at(xx, yy):
        inside = (xx >= 0) & (yy >= 0) & (xx < w) & (yy < h)
        v = src[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        v[~inside] = 0.0
        return v

    v = (1 - ax) * (1 - ay) * at(x0, y0) + ax * (1 - ay) * at(x0 + 1, y0) + (1 - ax) * ay * at(x0, y0 + 1) + ax * ay * at(x0 + 1, y0 + 1)
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def main():
    obama = Image.open(ROOT / "examples" / "obama.jpg").convert("RGB")
    biden = Image.open(ROOT / "examples" / "biden.jpg").convert("RGB")
    half = obama.resize((obama.width // 2, obama.height // 2), Image.LANCZOS)
    half.save(DATA / "obama_half.png", optimize=True)
    face = biden.crop((0, 0, 970, 970)).resize((485, 485), Image.LANCZOS)
    face.save(DATA / "biden_face.png", optimize=True)
    inputs = [
        ("obama.jpg", np.asarray(obama), None),
        ("biden.jpg", np.asarray(biden), None),
        ("obama_half.png", np.asarray(half), None),
        ("biden_face.png", np.asarray(face), None),
        ("obama_half.png turned -30", turn(np.asarray(half), -1), -30),
        ("obama_half.png turned 30", turn(np.asarray(half), 1), 30),
    ]
    records = []
    with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as detector, \
            mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.5) as mesh:
        for name, rgb, degrees in inputs:
            rgb = np.ascontiguousarray(rgb)
            h, w = rgb.shape[:2]
            detections = []
            for d in detector.process(rgb).detections or []:
                box = d.location_data.relative_bounding_box
                detections.append({
                    "score": float(d.score[0]),
                    "box": [box.xmin * w, box.ymin * h, box.width * w, box.height * h],
                    "keypoints": [[k.x * w, k.y * h] for k in d.location_data.relative_keypoints],
                })
            faces = mesh.process(rgb).multi_face_landmarks or []
            records.append({
                "name": name,
                "file": name.split(" ")[0],
                "turned_degrees": degrees,
                "width": w,
                "height": h,
                "pixels_fnv1a": f"{fnv1a(rgb.tobytes()):016x}",
                "detections": detections,
                "landmarks": [[[p.x * w, p.y * h, p.z * w] for p in f.landmark] for f in faces],
            })
            print(f"{name}: {w}x{h}, {len(detections)} detections, {len(faces)} meshes")
    (DATA / "mediapipe_reference.json").write_text(json.dumps({"mediapipe": mp.__version__, "images": records}))
    print(f"wrote {DATA / 'mediapipe_reference.json'}")


if __name__ == "__main__":
    main()
