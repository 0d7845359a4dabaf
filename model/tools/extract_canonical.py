"""Extracts MediaPipe's canonical face mesh from the npm package @mediapipe/face_mesh into
model/data/ (development time only; the product reads the committed files).

    curl -sSO https://registry.npmjs.org/@mediapipe/face_mesh/-/face_mesh-0.4.1657299874.tgz
    python3 model/tools/extract_canonical.py face_mesh-0.4.1657299874.tgz

Writes
- model/data/canonical_face.obj: the 468 vertices (MediaPipe's units, y up), their UVs and the
  898 triangles, unchanged (OBJ's indices are 1-based);
- model/data/canonical_face_contours.txt: the package's FACEMESH_* connection lists (lips, eyes,
  brows, face oval) as ordered loops of vertex indices.
Uses only the standard library: the protobuf is read by hand (GeometryPipelineMetadata, field 1 a
Mesh3d with vertex_buffer = field 3, packed floats x y z u v, and index_buffer = field 4).
"""
import hashlib
import io
import json
import re
import struct
import sys
import tarfile
from pathlib import Path

PACKAGE_SHA256 = "c08a7e0742a326285da666cf81d77c8b6f3a181a2ee948cadaf166008e0d3bc7"
ASSET = "geometry_pipeline_metadata_landmarks.binarypb"
OUT = Path(__file__).resolve().parent.parent / "data"


def varint(b, i):
    shift = value = 0
    while True:
        c = b[i]
        i += 1
        value |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return value, i


def fields(b):
    """(field number, wire type, value) of each field of a protobuf message."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(b, i)
        elif wire == 1:
            value, i = b[i:i + 8], i + 8
        elif wire == 2:
            n, i = varint(b, i)
            value, i = b[i:i + n], i + n
        elif wire == 5:
            value, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire} at byte {i}")
        yield number, wire, value


def packed_varints(b):
    out, i = [], 0
    while i < len(b):
        v, i = varint(b, i)
        out.append(v)
    return out


def loops(edges):
    """Orders a list of [a, b] connections into chains, each edge used once; a chain whose ends
    meet is a closed loop (its first index repeated at the end)."""
    unused = [tuple(e) for e in edges]
    chains = []
    while unused:
        targets = {b for _, b in unused}
        first = next((e for e in unused if e[0] not in targets), unused[0])
        unused.remove(first)
        chain = list(first)
        while (e := next((e for e in unused if e[0] == chain[-1]), None)) is not None:
            unused.remove(e)
            chain.append(e[1])
        chains.append(chain)
    return chains


def main(tgz):
    raw = Path(tgz).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != PACKAGE_SHA256:
        sys.exit(f"{tgz}: sha256 {digest}, expected {PACKAGE_SHA256}")
    tar = tarfile.open(fileobj=io.BytesIO(raw))
    loader = tar.extractfile("package/face_mesh_solution_packed_assets_loader.js").read().decode()
    entry = re.search(r'"filename":\s*"[^"]*' + re.escape(ASSET) + r'",\s*"start":\s*(\d+),\s*"end":\s*(\d+)', loader)
    start, end = int(entry.group(1)), int(entry.group(2))
    data = tar.extractfile("package/face_mesh_solution_packed_assets.data").read()[start:end]

    mesh = next(v for n, w, v in fields(data) if n == 1 and w == 2)
    floats, indices = [], []
    for n, w, v in fields(mesh):
        if n == 3:
            floats += struct.unpack(f"<{len(v) // 4}f", v) if w == 2 else [struct.unpack("<f", v)[0]]
        elif n == 4:
            indices += packed_varints(v) if w == 2 else [v]
    assert len(floats) == 468 * 5 and len(indices) == 898 * 3, (len(floats), len(indices))

    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "canonical_face.obj", "w") as f:
        f.write(f"# MediaPipe's canonical face mesh, from the npm package @mediapipe/face_mesh 0.4.1657299874\n")
        f.write(f"# ({ASSET}, bytes {start}-{end} of face_mesh_solution_packed_assets.data), Apache-2.0.\n")
        f.write("# Extracted unchanged by model/tools/extract_canonical.py; units as MediaPipe's (about cm), y up.\n")
        for k in range(468):
            x, y, z = floats[5 * k:5 * k + 3]
            f.write(f"v {x!r} {y!r} {z!r}\n")
        for k in range(468):
            u, v = floats[5 * k + 3:5 * k + 5]
            f.write(f"vt {u!r} {v!r}\n")
        for t in range(898):
            a, b, c = (i + 1 for i in indices[3 * t:3 * t + 3])
            f.write(f"f {a}/{a} {b}/{b} {c}/{c}\n")

    js = tar.extractfile("package/face_mesh.js").read().decode()
    with open(OUT / "canonical_face_contours.txt", "w") as f:
        f.write("# The FACEMESH_* connection lists of @mediapipe/face_mesh 0.4.1657299874 (face_mesh.js),\n")
        f.write("# Apache-2.0, as chains of vertex indices: name, then the indices in order.\n")
        for name in ["LIPS", "LEFT_EYE", "RIGHT_EYE", "LEFT_EYEBROW", "RIGHT_EYEBROW", "FACE_OVAL"]:
            var = re.search(r'H\("FACEMESH_' + name + r'",(\w+)\)', js).group(1)
            edges = json.loads(re.search(r'\b' + re.escape(var) + r'=(\[\[[\d,\[\]\s]*\]\])', js).group(1))
            for k, chain in enumerate(loops(edges)):
                f.write(f"{name.lower()}_{k} {' '.join(map(str, chain))}\n")
    print(f"wrote {OUT / 'canonical_face.obj'} and {OUT / 'canonical_face_contours.txt'}")


if __name__ == "__main__":
    main(sys.argv[1])
