"""Writes tests/data/bfm2017_fake.h5: a 30-vertex model in the layout of the Basel Face Model
2017 (`model2017-1_bfm_nomouth.h5`, written by statismo through the HDF5 library), so the HDF5
reader and the BFM 2017 importer are tested against a file the reference library wrote. The
values follow the formulas in tests/import.rs (`bfm2017_fake`), which checks them.

    pip install h5py numpy && python3 tests/data/make_bfm2017_fake.py
"""
import h5py
import numpy as np

N, K_ID, K_EXP, K_TEX = 30, 4, 3, 4
i = np.arange(N)
mean = np.stack([(i % 6 - 2.5) * 30.0, (i // 6 - 2.0) * 30.0, 10.0 * np.cos(i * 0.3)], axis=1).reshape(-1).astype(np.float32)


def basis(k, phase):
    """3N x k orthonormal columns from a fixed matrix."""
    m = np.cos(np.outer(np.arange(3 * N) + 1.0, np.arange(k) + 1.0) * 0.37 + phase)
    q, _ = np.linalg.qr(m)
    return q.astype(np.float32)


cells = []
for r in range(4):
    for c in range(5):
        a = r * 6 + c
        cells += [[a, a + 1, a + 7], [a, a + 7, a + 6]]
cells = np.array(cells, dtype=np.uint32).T  # 3 x T, 0-based, as statismo stores them

with h5py.File("tests/data/bfm2017_fake.h5", "w", libver="earliest") as f:
    shape = f.create_group("shape")
    shape["model/mean"] = mean
    shape["model/pcaBasis"] = basis(K_ID, 0.0)  # orthonormal
    shape["model/pcaVariance"] = (np.array([4.0, 3.0, 2.0, 1.0], dtype=np.float32) ** 2)
    shape["model/noiseVariance"] = np.float32(0.0)
    shape["representer/points"] = mean.reshape(N, 3).T
    shape["representer/cells"] = cells
    expression = f.create_group("expression")
    expression["model/mean"] = np.zeros(3 * N, dtype=np.float32)
    expression["model/pcaBasis"] = basis(K_EXP, 1.0)
    expression["model/pcaVariance"] = np.array([2.0, 1.5, 1.0], dtype=np.float32) ** 2
    color = f.create_group("color")
    color["model/mean"] = (0.5 + 0.3 * np.sin(np.arange(3 * N) * 0.1)).astype(np.float32)
    # Chunked, shuffled and deflated, and scaled by the standard deviations: the other way
    # a basis can be stored.
    sd = np.array([0.2, 0.1, 0.05, 0.02], dtype=np.float32)
    color.create_dataset("model/pcaBasis", data=basis(K_TEX, 2.0) * sd, chunks=(16, 2), compression="gzip", shuffle=True)
    color["model/pcaVariance"] = sd ** 2
    f["metadata/landmarks/text"] = np.bytes_("nose tip, eyes, mouth: positions, not iBUG indices")
