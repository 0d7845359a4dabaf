"""The PyTorch peer of faceforge's landmark + regulariser fit (scenes/landmark_fit.ron) and of its
learn-mode training step (scenes/pgn_train_guidance.ron).

Written here, the way a researcher would write the same fit in PyTorch on the CPU: the morphable
model decoded with one matrix product per basis over the batch (S = S̄ + α B_id + β B_exp), a
weak-perspective projection (u = f R₀·X + t_x, v = −f R₁·X + t_y, R = R_z(roll) R_x(pitch)
R_y(yaw)), PGN's L1 landmark loss (Eq. 8, in pixels of a 256-pixel crop, averaged over the
frames) and L1 prior (Eq. 12), autograd, torch.optim.Adam with the learning rate halved every
`halve_every` iterations. Every parameter is optimised in faceforge's units (coefficients in σ,
angles in 0.1 rad, …), which is how faceforge's Adam is defined, so both fits take the same
steps and their loss curves can be compared, not only their speed.

It reads what `faceforge bench peer --export DIR` wrote (the model's arrays, the frames'
landmarks, the starting poses, the settings and faceforge's own timings and loss curve) and
prints both side by side. Two variants: the full mesh decoded every iteration (what faceforge
does), and only the 68 landmark rows of the bases (gathered once before the loop), the cheaper
fit a PyTorch user could write.

It also times one training step of faceforge's learn-mode network as PGN's step 1 trains it
(the same layers, batch, images and guidance loss; `train_<size>.json` and `.f32`), against
faceforge's step on burn's CPU backend, where the export has them.

    python peer.py DIR [--record docs/performance.md]
"""

import argparse
import datetime
import json
import math
import pathlib
import platform
import time

import numpy as np
import torch


def load(directory):
    d = pathlib.Path(directory)
    manifest = json.loads((d / "manifest.json").read_text())

    def array(name, *shape):
        return torch.from_numpy(np.fromfile(d / f"{name}.f32", dtype="<f4").reshape(*shape).copy())

    n, k_id, k_exp = manifest["vertices"], manifest["n_id"], manifest["n_exp"]
    model = {
        "mean": array("mean_shape", 3 * n),
        "id": array("id_basis", k_id, 3 * n),
        "exp": array("exp_basis", k_exp, 3 * n),
        "id_sigma": array("id_sigma", k_id),
        "exp_sigma": array("exp_sigma", k_exp),
        "landmarks": torch.tensor(manifest["landmark_vertices"], dtype=torch.long),
    }
    return manifest, model


def rotation(angles):
    """R = R_z(roll) R_x(pitch) R_y(yaw) for a batch of (yaw, pitch, roll), B × 3 × 3."""
    yaw, pitch, roll = angles[:, 0], angles[:, 1], angles[:, 2]
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(-1, 3, 3)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], 1).view(-1, 3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ rx @ ry


def fit(manifest, model, landmark_rows_only):
    frames = manifest["frames"]
    adam = manifest["adam"]
    units = adam["units"]
    b = len(frames)
    lm = model["landmarks"]
    targets = torch.tensor([f["landmarks"] for f in frames], dtype=torch.float32)  # B × 68 × 2
    to_crop = torch.tensor([manifest["landmark_crop"] / max(f["width"], f["height"]) for f in frames])
    w_landmark, w_reg = manifest["weights"]["landmark"], manifest["weights"]["regulariser"]
    f_id, f_exp = manifest["regulariser_factors"]
    id_sigma, exp_sigma = model["id_sigma"], model["exp_sigma"]
    if landmark_rows_only:
        # The bases' rows of the 68 landmark vertices, gathered once.
        rows = torch.stack([3 * lm, 3 * lm + 1, 3 * lm + 2], 1).reshape(-1)
        mean, id_basis, exp_basis = model["mean"][rows], model["id"][:, rows].contiguous(), model["exp"][:, rows].contiguous()
    else:
        mean, id_basis, exp_basis = model["mean"], model["id"], model["exp"]

    # The parameters in faceforge's units: Adam on x / unit is Adam with faceforge's units.
    def leaf(values, unit):
        return (torch.tensor(values, dtype=torch.float32) / unit).requires_grad_()

    y_id = leaf([f["id"] for f in frames], id_sigma)
    y_exp = leaf([f["exp"] for f in frames], exp_sigma)
    y_angles = leaf([f["angles"] for f in frames], units["angle"])
    y_log_scale = leaf([f["log_scale"] for f in frames], units["log_scale"])
    y_translation = leaf([f["translation"] for f in frames], units["translation"])
    params = [y_id, y_exp, y_angles, y_log_scale, y_translation]
    optimiser = torch.optim.Adam(params, lr=adam["lr"], betas=(adam["beta1"], adam["beta2"]), eps=adam["eps"])

    losses, samples = [], []
    start = time.perf_counter()
    last = start
    for it in range(manifest["iterations"]):
        for group in optimiser.param_groups:
            group["lr"] = adam["lr"] * 0.5 ** (it // adam["halve_every"]) if adam["halve_every"] else adam["lr"]
        optimiser.zero_grad(set_to_none=True)
        alpha, beta = y_id * id_sigma, y_exp * exp_sigma
        shapes = mean + alpha @ id_basis + beta @ exp_basis  # B × 3N (or B × 3·68)
        x = shapes.view(b, -1, 3)
        if not landmark_rows_only:
            x = x[:, lm]
        r = rotation(y_angles * units["angle"])
        f = (y_log_scale * units["log_scale"]).exp().view(b, 1)
        t = y_translation * units["translation"]
        u = f * (x @ r[:, 0].unsqueeze(2)).squeeze(2) + t[:, :1]
        v = -f * (x @ r[:, 1].unsqueeze(2)).squeeze(2) + t[:, 1:]
        projected = torch.stack([u, v], 2)
        landmark = w_landmark * ((projected - targets).abs().sum((1, 2)) * to_crop).mean()
        regulariser = w_reg * (f_id * y_id.abs().sum(1) + f_exp * y_exp.abs().sum(1)).mean()
        loss = landmark + regulariser
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        now = time.perf_counter()
        samples.append((now - last) * 1e3)
        last = now
    seconds = time.perf_counter() - start
    return {"ms_per_iteration": spread(samples), "seconds": seconds, "losses": losses}


class Network(torch.nn.Module):
    """faceforge's learn-mode network as PGN's step 1 trains it (learn/src/network.rs): a stride-1
    stem and four stride-2 3 × 3 convolutions (ReLU), the UV decoder (three 4 × 4 transposed
    convolutions and a 3-channel convolution) read at the landmarks' UVs by fixed bilinear
    weights, and the identity and expression heads (conv, average pool, three FC layers), which
    step 1 runs but does not train."""

    def __init__(self, width, hidden, n_id, n_exp, uv_weights):
        super().__init__()
        conv = lambda i, o, s: torch.nn.Conv2d(i, o, 3, stride=s, padding=1)
        w, f = width, 8 * width
        self.stem = conv(3, w, 1)
        self.stages = torch.nn.ModuleList([conv(w << k, w << min(k + 1, 3), 2) for k in range(4)])
        self.up = torch.nn.ModuleList([torch.nn.ConvTranspose2d(i, o, 4, stride=2, padding=1) for i, o in [(f, f // 2), (f // 2, f // 4), (f // 4, f // 8)]])
        self.out = conv(f // 8, 3, 1)
        head = lambda n: torch.nn.ModuleDict({"conv": conv(f, f, 1), "fc": torch.nn.Sequential(
            torch.nn.Linear(f, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n))})
        self.identity, self.expression = head(n_id), head(n_exp)
        self.register_buffer("uv_weights", uv_weights)

    def forward(self, images):
        x = torch.relu(self.stem(images - 0.5))
        for stage in self.stages:
            x = torch.relu(stage(x))
        features = x
        for up in self.up:
            x = torch.relu(up(x))
        uv_map = self.out(x)  # B × 3 × U × U
        b, s = images.shape[0], images.shape[-1]
        landmarks = (uv_map.flatten(2) @ self.uv_weights).transpose(1, 2)  # B × L × 3
        landmarks = (landmarks + torch.tensor([0.5, 0.5, 0.0])) * s
        with torch.no_grad():  # step 1 trains the encoder and the decoder only
            coefficients = [h["fc"](torch.relu(h["conv"](features)).mean((2, 3))) for h in (self.identity, self.expression)]
        return landmarks, coefficients


def uv_weights(uvs, u):
    """(U², L) bilinear weights of each landmark's UV position in a U × U map, as faceforge's
    Readout builds them (texel centres at (i + 0.5) / U, v downwards)."""
    weights = torch.zeros(u * u, len(uvs))
    for l, (uu, vv) in enumerate(uvs):
        x, y = uu * u - 0.5, (1.0 - vv) * u - 0.5
        x0, y0 = min(max(math.floor(x), 0), u - 1), min(max(math.floor(y), 0), u - 1)
        fx, fy = min(max(x - x0, 0.0), 1.0), min(max(y - y0, 0.0), 1.0)
        x1, y1 = min(x0 + 1, u - 1), min(y0 + 1, u - 1)
        for xx, yy, w in [(x0, y0, (1 - fx) * (1 - fy)), (x1, y0, fx * (1 - fy)), (x0, y1, (1 - fx) * fy), (x1, y1, fx * fy)]:
            weights[yy * u + xx, l] += w
    return weights


def guidance_loss(landmarks, targets, to_crop):
    """loss_guidance: L1 on x, y (and on depth, centred, where the frame has 3D targets), summed
    over the landmarks, in pixels of a 256-pixel crop, averaged over the frames."""
    total = 0.0
    for b, t in enumerate(targets):
        p = landmarks[b]
        value = (p[:, :2] - torch.tensor(t["points_2d"])).abs().sum()
        if t["points_3d"] is not None:
            depth = torch.tensor(t["points_3d"])[:, 2]
            value = value + ((p[:, 2] - p[:, 2].mean()) - (depth - depth.mean())).abs().sum()
        total = total + value * to_crop
    return total / len(targets)


def train_step(directory, size):
    """faceforge's and the peer's ms per training step at `size`²."""
    d = pathlib.Path(directory)
    m = json.loads((d / f"train_{size}.json").read_text())
    b = m["batch"]
    images = torch.from_numpy(np.fromfile(d / f"train_{size}.f32", dtype="<f4").reshape(b, 3, size, size).copy())
    torch.manual_seed(1)
    net = Network(m["width"], m["hidden"], m["n_id"], m["n_exp"], uv_weights(m["landmark_uvs"], size // 2))
    count = sum(p.numel() for p in net.parameters())
    if count != m["parameters"]:
        raise SystemExit(f"the peer's network has {count} parameters, faceforge's {m['parameters']}: not the same layers")
    trained = [p for name, p in net.named_parameters() if not name.startswith(("identity", "expression"))]
    adam = m["adam"]
    optimiser = torch.optim.Adam(trained, lr=adam["lr"], betas=(adam["beta1"], adam["beta2"]), eps=adam["eps"])
    to_crop = m["landmark_crop"] / size

    def step():
        optimiser.zero_grad(set_to_none=True)
        landmarks, _ = net(images)
        loss = guidance_loss(landmarks, m["targets"], to_crop)
        loss.backward()
        optimiser.step()

    step()  # warm-up, as faceforge's
    samples = []
    for _ in range(m["faceforge"]["repeats"]):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1e3)
    return m, spread(samples)


def spread(samples):
    s = sorted(samples)
    return [s[0], s[len(s) // 2], s[-1]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="the folder `faceforge bench peer --export` wrote")
    parser.add_argument("--record", help="append the table to this Markdown file")
    parser.add_argument("--command", default="bash benches/peer/run.sh", help="the command to name in the record")
    args = parser.parse_args()
    manifest, model = load(args.export)
    ours = {v["name"]: v for v in manifest["faceforge"]}
    frames, iterations = len(manifest["frames"]), manifest["iterations"]
    table = [
        "| fit | faceforge ms/iteration min / median / max | PyTorch ms/iteration min / median / max | PyTorch ÷ faceforge (median) "
        "| whole fit s, faceforge / PyTorch | loss first / last, faceforge | loss first / last, PyTorch | largest loss difference over the curve |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows_only in [("full mesh", False), ("landmark rows only", True)]:
        ff, pt = ours[name], fit(manifest, model, rows_only)
        ms = lambda r: " / ".join(f"{x:.3f}" for x in r["ms_per_iteration"])
        curve = lambda r: f"{r['losses'][0]:.2f} / {r['losses'][-1]:.2f}"
        diff = max(abs(a - b) / abs(b) for a, b in zip(pt["losses"], ff["losses"])) * 100
        ratio = pt["ms_per_iteration"][1] / ff["ms_per_iteration"][1]
        table.append(f"| {name} | {ms(ff)} | {ms(pt)} | {ratio:.2f} | {ff['seconds']:.2f} / {pt['seconds']:.2f} | {curve(ff)} | {curve(pt)} | {diff:.2f} % |")
    text = "\n".join(table)
    train_rows = []
    for path in sorted(pathlib.Path(args.export).glob("train_*.json"), key=lambda p: int(p.stem.split("_")[1])):
        size = int(path.stem.split("_")[1])
        m, pt = train_step(args.export, size)
        ff = m["faceforge"]["ms_per_step"]
        train_rows.append(f"| {size}², {m['batch']} frames | {' / '.join(f'{x:.1f}' for x in ff)} | {' / '.join(f'{x:.1f}' for x in pt)} | {pt[1] / ff[1]:.2f} |")
    if train_rows:
        text += ("\n\nOne training step of PGN's step 1 (" + m["scene"] + f": encoder and UV decoder, width {m['width']}, guidance loss, Adam; "
                 "faceforge on burn's flex backend, its whole graph included):\n\n"
                 "| step | faceforge ms min / median / max | PyTorch ms min / median / max | PyTorch ÷ faceforge (median) |\n"
                 "| --- | ---: | ---: | ---: |\n" + "\n".join(train_rows))
    title = (f"landmark + regulariser fit of {manifest['scene']}: {frames} frames × {iterations} iterations, "
             f"{manifest['vertices']} vertices, {manifest['n_id']} + {manifest['n_exp']} components; "
             f"faceforge (native CPU) against PyTorch {torch.__version__} ({torch.get_num_threads()} threads, eager, CPU)")
    print(f"{title}\n\n{text}\n")
    print("PyTorch ÷ faceforge above 1: faceforge is that many times faster.")
    if args.record:
        stamp = datetime.date.today().isoformat()
        entry = f"\n### {title}\n\n{stamp}, {manifest.get('machine', platform.processor())}; `{args.command}`\n\n{text}\n"
        with open(args.record, "a") as f:
            f.write(entry)
        print(f"appended to {args.record}")


if __name__ == "__main__":
    main()
