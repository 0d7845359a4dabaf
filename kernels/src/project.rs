//! project: camera-space projection of a batch of meshes to pixels, u right and v down, with the
//! pixel (px, py) centred at (px + ½, py + ½). Each vertex becomes [u, v, depth, inv_w]: depth
//! orders the z-buffer (smaller is nearer) and inv_w makes interpolation perspective-correct.
//!
//! - Weak perspective, PGN Eq. 2: the affine T = [f·R | t] as two rows a, b (+ offsets):
//!   u = a·X + t_u, v = b·X + t_v; depth = (a × b)·X / √|a × b|; inv_w = 1. With v down, a
//!   camera looking at the face has a = f·r₁, b = −f·r₂, so depth = −f·r₃·X: the side of the
//!   face towards the camera (+z for a frontal pose) is nearer.
//! - Pinhole, MGCNet: X_c = R X + t (x right, y down, z forward), u = f_x x/z + c_x,
//!   v = f_y y/z + c_y; depth = z, inv_w = 1/z. A vertex at z ≤ `NEAR` is invalid: inv_w = 0,
//!   and the rasterizer skips its triangles.
//!
//! Adjoint: from d[u, v, depth, inv_w] to the vertex positions and to the camera parameters.
//! The render reads the depth only in the z-test, which is not differentiable, so `backward`
//! ignores its gradient; inv_w (perspective-correct interpolation) carries one for a pinhole
//! camera. A loss that compares depths (the 3D landmark loss) adds `depth_backward_cpu`.
//!
//! Parameters per item, 16 floats: weak = [a (3), t_u, b (3), t_v, 0 …]; pinhole =
//! [f_x, f_y, c_x, c_y, R row-major (9), t (3)].

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use cubecl::prelude::*;
use cubecl::server::Handle;

/// Floats per camera.
pub const CAMERA_PARAMS: usize = 16;
/// Nearest valid depth of a pinhole camera.
pub const NEAR: f32 = 1e-3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraModel {
    WeakPerspective,
    Pinhole,
}

impl CameraModel {
    fn code(self) -> u32 {
        match self {
            CameraModel::WeakPerspective => 0,
            CameraModel::Pinhole => 1,
        }
    }
}

/// Weak-perspective parameters from the two rows of T = [f·R | t] (each [a₀, a₁, a₂, t]).
pub fn weak_params(t: [[f32; 4]; 2]) -> [f32; CAMERA_PARAMS] {
    let mut p = [0.0; CAMERA_PARAMS];
    p[..4].copy_from_slice(&t[0]);
    p[4..8].copy_from_slice(&t[1]);
    p
}

/// Pinhole parameters from intrinsics (f_x, f_y, c_x, c_y), a row-major rotation and a translation.
pub fn pinhole_params(k: [f32; 4], r: [f32; 9], t: [f32; 3]) -> [f32; CAMERA_PARAMS] {
    let mut p = [0.0; CAMERA_PARAMS];
    p[..4].copy_from_slice(&k);
    p[4..13].copy_from_slice(&r);
    p[13..16].copy_from_slice(&t);
    p
}

/// R = R_z(roll) · R_x(pitch) · R_y(yaw) (radians), row-major: the head turned by yaw about y,
/// then tilted by pitch about x, then rolled about the view axis.
pub fn rotation_ypr(yaw: f32, pitch: f32, roll: f32) -> [f32; 9] {
    let (cy, sy, cp, sp, cr, sr) = (yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin());
    let ry = [cy, 0.0, sy, 0.0, 1.0, 0.0, -sy, 0.0, cy];
    let rx = [1.0, 0.0, 0.0, 0.0, cp, -sp, 0.0, sp, cp];
    let rz = [cr, -sr, 0.0, sr, cr, 0.0, 0.0, 0.0, 1.0];
    let mul = |a: [f32; 9], b: [f32; 9]| {
        let mut c = [0.0; 9];
        for i in 0..3 {
            for j in 0..3 {
                c[i * 3 + j] = (0..3).map(|k| a[i * 3 + k] * b[k * 3 + j]).sum();
            }
        }
        c
    };
    mul(rz, mul(rx, ry))
}

/// a × b for the two rows of a weak-perspective camera: depth grows along it, so −(a × b)
/// points at the camera.
pub fn weak_depth_axis(camera: &[f32]) -> [f32; 3] {
    let (a, b) = ([camera[0], camera[1], camera[2]], [camera[4], camera[5], camera[6]]);
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn check(positions: &[f32], cameras: &[f32], n: usize) -> usize {
    assert_eq!(positions.len() % (3 * n), 0, "project: positions length");
    let batch = positions.len() / (3 * n);
    assert_eq!(cameras.len(), batch * CAMERA_PARAMS, "project: cameras length");
    batch
}

/// Native forward: B × 3N positions → B × 4N [u, v, depth, inv_w].
pub fn forward_cpu(model: CameraModel, positions: &[f32], cameras: &[f32], n: usize) -> Vec<f32> {
    let batch = check(positions, cameras, n);
    let mut out = vec![0.0; batch * 4 * n];
    for b in 0..batch {
        let c = &cameras[b * CAMERA_PARAMS..(b + 1) * CAMERA_PARAMS];
        for v in 0..n {
            let x = &positions[(b * n + v) * 3..(b * n + v) * 3 + 3];
            let o = &mut out[(b * n + v) * 4..(b * n + v) * 4 + 4];
            match model {
                CameraModel::WeakPerspective => {
                    let (a, bb) = ([c[0], c[1], c[2]], [c[4], c[5], c[6]]);
                    let cross = weak_depth_axis(c);
                    let scale = (cross[0] * cross[0] + cross[1] * cross[1] + cross[2] * cross[2]).sqrt().sqrt().max(1e-20);
                    o[0] = a[0] * x[0] + a[1] * x[1] + a[2] * x[2] + c[3];
                    o[1] = bb[0] * x[0] + bb[1] * x[1] + bb[2] * x[2] + c[7];
                    o[2] = (cross[0] * x[0] + cross[1] * x[1] + cross[2] * x[2]) / scale;
                    o[3] = 1.0;
                }
                CameraModel::Pinhole => {
                    let r = &c[4..13];
                    let xc = r[0] * x[0] + r[1] * x[1] + r[2] * x[2] + c[13];
                    let yc = r[3] * x[0] + r[4] * x[1] + r[5] * x[2] + c[14];
                    let zc = r[6] * x[0] + r[7] * x[1] + r[8] * x[2] + c[15];
                    if zc > NEAR {
                        o.copy_from_slice(&[c[0] * xc / zc + c[2], c[1] * yc / zc + c[3], zc, 1.0 / zc]);
                    } else {
                        o.copy_from_slice(&[0.0, 0.0, f32::MAX, 0.0]);
                    }
                }
            }
        }
    }
    out
}

/// The adjoint of the depth alone: d depth (B × N) → (d positions B × 3N, d cameras B × 16).
/// Weak perspective: depth = c·X / √|c| with c = a × b; pinhole: depth = z_c.
pub fn depth_backward_cpu(model: CameraModel, positions: &[f32], cameras: &[f32], grad_depth: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    let batch = check(positions, cameras, n);
    assert_eq!(grad_depth.len(), batch * n, "project depth backward: grad length");
    let mut gx = vec![0.0; positions.len()];
    let mut gc = vec![0.0; cameras.len()];
    for b in 0..batch {
        let c = &cameras[b * CAMERA_PARAMS..(b + 1) * CAMERA_PARAMS];
        let g_cam = &mut gc[b * CAMERA_PARAMS..(b + 1) * CAMERA_PARAMS];
        for v in 0..n {
            let i = b * n + v;
            let (x, gd) = (&positions[i * 3..i * 3 + 3], grad_depth[i]);
            if gd == 0.0 {
                continue;
            }
            match model {
                CameraModel::WeakPerspective => {
                    let (a, bb) = ([c[0], c[1], c[2]], [c[4], c[5], c[6]]);
                    let cross = weak_depth_axis(c);
                    let norm = (cross[0] * cross[0] + cross[1] * cross[1] + cross[2] * cross[2]).sqrt().max(1e-20);
                    let root = norm.sqrt();
                    let dot = cross[0] * x[0] + cross[1] * x[1] + cross[2] * x[2];
                    // d depth / d c = X/√n − (c·X) c / (2 n^{5/2}), then c = a × b.
                    let g_cross: [f32; 3] = std::array::from_fn(|k| gd * (x[k] / root - dot * cross[k] / (2.0 * norm * norm * root)));
                    let by_a = [bb[1] * g_cross[2] - bb[2] * g_cross[1], bb[2] * g_cross[0] - bb[0] * g_cross[2], bb[0] * g_cross[1] - bb[1] * g_cross[0]];
                    let by_b = [g_cross[1] * a[2] - g_cross[2] * a[1], g_cross[2] * a[0] - g_cross[0] * a[2], g_cross[0] * a[1] - g_cross[1] * a[0]];
                    for k in 0..3 {
                        gx[i * 3 + k] += gd * cross[k] / root;
                        g_cam[k] += by_a[k];
                        g_cam[4 + k] += by_b[k];
                    }
                }
                CameraModel::Pinhole => {
                    let r = &c[4..13];
                    let zc = r[6] * x[0] + r[7] * x[1] + r[8] * x[2] + c[15];
                    if zc <= NEAR {
                        continue;
                    }
                    for k in 0..3 {
                        gx[i * 3 + k] += gd * r[6 + k];
                        g_cam[4 + 6 + k] += gd * x[k];
                    }
                    g_cam[15] += gd;
                }
            }
        }
    }
    (gx, gc)
}

/// Native adjoint: d projected (B × 4N) → (d positions B × 3N, d cameras B × 16).
pub fn backward_cpu(model: CameraModel, positions: &[f32], cameras: &[f32], grad_projected: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    let batch = check(positions, cameras, n);
    assert_eq!(grad_projected.len(), batch * 4 * n, "project backward: grad length");
    let mut gx = vec![0.0; positions.len()];
    let mut gc = vec![0.0; cameras.len()];
    for b in 0..batch {
        let c = &cameras[b * CAMERA_PARAMS..(b + 1) * CAMERA_PARAMS];
        let g_cam = &mut gc[b * CAMERA_PARAMS..(b + 1) * CAMERA_PARAMS];
        for v in 0..n {
            let i = b * n + v;
            let x = &positions[i * 3..i * 3 + 3];
            let (gu, gv, gq) = (grad_projected[4 * i], grad_projected[4 * i + 1], grad_projected[4 * i + 3]);
            match model {
                CameraModel::WeakPerspective => {
                    for k in 0..3 {
                        gx[i * 3 + k] = gu * c[k] + gv * c[4 + k];
                        g_cam[k] += gu * x[k];
                        g_cam[4 + k] += gv * x[k];
                    }
                    g_cam[3] += gu;
                    g_cam[7] += gv;
                }
                CameraModel::Pinhole => {
                    let r = &c[4..13];
                    let xc = [
                        r[0] * x[0] + r[1] * x[1] + r[2] * x[2] + c[13],
                        r[3] * x[0] + r[4] * x[1] + r[5] * x[2] + c[14],
                        r[6] * x[0] + r[7] * x[1] + r[8] * x[2] + c[15],
                    ];
                    if xc[2] <= NEAR {
                        continue;
                    }
                    let iz = 1.0 / xc[2];
                    // d(u, v, 1/z)/d X_c, then X_c = R X + t.
                    let g_xc = [gu * c[0] * iz, gv * c[1] * iz, -(gu * c[0] * xc[0] + gv * c[1] * xc[1] + gq) * iz * iz];
                    for k in 0..3 {
                        gx[i * 3 + k] = r[k] * g_xc[0] + r[3 + k] * g_xc[1] + r[6 + k] * g_xc[2];
                        for row in 0..3 {
                            g_cam[4 + row * 3 + k] += g_xc[row] * x[k];
                        }
                        g_cam[13 + k] += g_xc[k];
                    }
                    g_cam[0] += gu * xc[0] * iz;
                    g_cam[1] += gv * xc[1] * iz;
                    g_cam[2] += gu;
                    g_cam[3] += gv;
                }
            }
        }
    }
    (gx, gc)
}

/// One thread per (item, vertex).
#[cube(launch_unchecked)]
fn project_forward_kernel(positions: &[f32], cameras: &[f32], out: &mut [f32], n: usize, pinhole: u32) {
    let i = ABSOLUTE_POS;
    if i < positions.len() / 3 {
        let c = (i / n) * 16;
        let x0 = positions[3 * i];
        let x1 = positions[3 * i + 1];
        let x2 = positions[3 * i + 2];
        if pinhole == 1 {
            let xc = cameras[c + 4] * x0 + cameras[c + 5] * x1 + cameras[c + 6] * x2 + cameras[c + 13];
            let yc = cameras[c + 7] * x0 + cameras[c + 8] * x1 + cameras[c + 9] * x2 + cameras[c + 14];
            let zc = cameras[c + 10] * x0 + cameras[c + 11] * x1 + cameras[c + 12] * x2 + cameras[c + 15];
            if zc > 0.001f32 {
                out[4 * i] = cameras[c] * xc / zc + cameras[c + 2];
                out[4 * i + 1] = cameras[c + 1] * yc / zc + cameras[c + 3];
                out[4 * i + 2] = zc;
                out[4 * i + 3] = 1.0f32 / zc;
            } else {
                out[4 * i] = 0.0f32;
                out[4 * i + 1] = 0.0f32;
                out[4 * i + 2] = f32::MAX;
                out[4 * i + 3] = 0.0f32;
            }
        } else {
            let a0 = cameras[c];
            let a1 = cameras[c + 1];
            let a2 = cameras[c + 2];
            let b0 = cameras[c + 4];
            let b1 = cameras[c + 5];
            let b2 = cameras[c + 6];
            let n0 = a1 * b2 - a2 * b1;
            let n1 = a2 * b0 - a0 * b2;
            let n2 = a0 * b1 - a1 * b0;
            let scale = f32::max(f32::sqrt(f32::sqrt(n0 * n0 + n1 * n1 + n2 * n2)), 1e-20f32);
            out[4 * i] = a0 * x0 + a1 * x1 + a2 * x2 + cameras[c + 3];
            out[4 * i + 1] = b0 * x0 + b1 * x1 + b2 * x2 + cameras[c + 7];
            out[4 * i + 2] = (n0 * x0 + n1 * x1 + n2 * x2) / scale;
            out[4 * i + 3] = 1.0f32;
        }
    }
}

/// d positions: one thread per (item, vertex).
#[cube(launch_unchecked)]
fn project_backward_positions_kernel(positions: &[f32], cameras: &[f32], grad: &[f32], grad_positions: &mut [f32], n: usize, pinhole: u32) {
    let i = ABSOLUTE_POS;
    if i < positions.len() / 3 {
        let c = (i / n) * 16;
        let gu = grad[4 * i];
        let gv = grad[4 * i + 1];
        let gq = grad[4 * i + 3];
        if pinhole == 1 {
            let x0 = positions[3 * i];
            let x1 = positions[3 * i + 1];
            let x2 = positions[3 * i + 2];
            let xc = cameras[c + 4] * x0 + cameras[c + 5] * x1 + cameras[c + 6] * x2 + cameras[c + 13];
            let yc = cameras[c + 7] * x0 + cameras[c + 8] * x1 + cameras[c + 9] * x2 + cameras[c + 14];
            let zc = cameras[c + 10] * x0 + cameras[c + 11] * x1 + cameras[c + 12] * x2 + cameras[c + 15];
            let mut g0 = 0.0f32;
            let mut g1 = 0.0f32;
            let mut g2 = 0.0f32;
            if zc > 0.001f32 {
                let iz = 1.0f32 / zc;
                g0 = gu * cameras[c] * iz;
                g1 = gv * cameras[c + 1] * iz;
                g2 = -(gu * cameras[c] * xc + gv * cameras[c + 1] * yc + gq) * iz * iz;
            }
            for k in 0..3usize {
                grad_positions[3 * i + k] = cameras[c + 4 + k] * g0 + cameras[c + 7 + k] * g1 + cameras[c + 10 + k] * g2;
            }
        } else {
            for k in 0..3usize {
                grad_positions[3 * i + k] = gu * cameras[c + k] + gv * cameras[c + 4 + k];
            }
        }
    }
}

/// d cameras: one thread per (item, parameter), summing over the item's vertices.
#[cube(launch_unchecked)]
fn project_backward_cameras_kernel(positions: &[f32], cameras: &[f32], grad: &[f32], grad_cameras: &mut [f32], n: usize, pinhole: u32) {
    let pos = ABSOLUTE_POS;
    if pos < grad_cameras.len() {
        let b = pos / 16;
        let p = pos % 16;
        let c = b * 16;
        let mut acc = 0.0f32;
        for v in 0..n {
            let i = b * n + v;
            let gu = grad[4 * i];
            let gv = grad[4 * i + 1];
            let gq = grad[4 * i + 3];
            let x0 = positions[3 * i];
            let x1 = positions[3 * i + 1];
            let x2 = positions[3 * i + 2];
            if pinhole == 1 {
                let xc = cameras[c + 4] * x0 + cameras[c + 5] * x1 + cameras[c + 6] * x2 + cameras[c + 13];
                let yc = cameras[c + 7] * x0 + cameras[c + 8] * x1 + cameras[c + 9] * x2 + cameras[c + 14];
                let zc = cameras[c + 10] * x0 + cameras[c + 11] * x1 + cameras[c + 12] * x2 + cameras[c + 15];
                if zc > 0.001f32 {
                    let iz = 1.0f32 / zc;
                    let g0 = gu * cameras[c] * iz;
                    let g1 = gv * cameras[c + 1] * iz;
                    let g2 = -(gu * cameras[c] * xc + gv * cameras[c + 1] * yc + gq) * iz * iz;
                    if p == 0 {
                        acc += gu * xc * iz;
                    } else if p == 1 {
                        acc += gv * yc * iz;
                    } else if p == 2 {
                        acc += gu;
                    } else if p == 3 {
                        acc += gv;
                    } else if p < 13 {
                        let row = (p - 4) / 3;
                        let col = (p - 4) % 3;
                        let mut g_row = g0;
                        if row == 1 {
                            g_row = g1;
                        }
                        if row == 2 {
                            g_row = g2;
                        }
                        let mut xk = x0;
                        if col == 1 {
                            xk = x1;
                        }
                        if col == 2 {
                            xk = x2;
                        }
                        acc += g_row * xk;
                    } else if p == 13 {
                        acc += g0;
                    } else if p == 14 {
                        acc += g1;
                    } else {
                        acc += g2;
                    }
                }
            } else if p < 8 {
                let mut g = gu;
                if p >= 4 {
                    g = gv;
                }
                let k = p % 4;
                let mut xk = 1.0f32;
                if k == 0 {
                    xk = x0;
                }
                if k == 1 {
                    xk = x1;
                }
                if k == 2 {
                    xk = x2;
                }
                acc += g * xk;
            }
        }
        grad_cameras[pos] = acc;
    }
}

/// Device forward on handles already on the device: `batch` meshes of `n` vertices.
pub fn forward_device(client: &cubecl::client::Client, model: CameraModel, positions: &Handle, cameras: &Handle, batch: usize, n: usize) -> Handle {
    let len = batch * n * 4;
    let out = client.empty(len * size_of::<f32>());
    let (count, dim) = grid_1d(batch * n);
    #[allow(unsafe_code)]
    // SAFETY: every index is below the lengths the callers checked (batch × n vertices, batch cameras).
    unsafe {
        project_forward_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(positions.clone(), batch * n * 3),
            BufferArg::from_raw_parts(cameras.clone(), batch * CAMERA_PARAMS),
            BufferArg::from_raw_parts(out.clone(), len),
            n,
            model.code(),
        );
    }
    out
}

/// Device adjoint on handles already on the device: (d positions, d cameras).
pub fn backward_device(client: &cubecl::client::Client, model: CameraModel, positions: &Handle, cameras: &Handle, grad_projected: &Handle, batch: usize, n: usize) -> (Handle, Handle) {
    let (n_positions, n_cameras, n_grad) = (batch * n * 3, batch * CAMERA_PARAMS, batch * n * 4);
    let gp = client.empty(n_positions * size_of::<f32>());
    let gc = client.empty(n_cameras * size_of::<f32>());
    let (count, dim) = grid_1d(batch * n);
    let (count_c, dim_c) = grid_1d(n_cameras);
    #[allow(unsafe_code)]
    // SAFETY: every index is below the lengths the callers checked.
    unsafe {
        project_backward_positions_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(positions.clone(), n_positions),
            BufferArg::from_raw_parts(cameras.clone(), n_cameras),
            BufferArg::from_raw_parts(grad_projected.clone(), n_grad),
            BufferArg::from_raw_parts(gp.clone(), n_positions),
            n,
            model.code(),
        );
        project_backward_cameras_kernel::launch_unchecked(
            client,
            count_c,
            dim_c,
            BufferArg::from_raw_parts(positions.clone(), n_positions),
            BufferArg::from_raw_parts(cameras.clone(), n_cameras),
            BufferArg::from_raw_parts(grad_projected.clone(), n_grad),
            BufferArg::from_raw_parts(gc.clone(), n_cameras),
            n,
            model.code(),
        );
    }
    (gp, gc)
}

/// Forward on whichever backend.
pub fn forward(backend: &Backend, model: CameraModel, positions: &[f32], cameras: &[f32], n: usize) -> Vec<f32> {
    match backend {
        Backend::Cpu => forward_cpu(model, positions, cameras, n),
        Backend::Gpu { client, .. } => {
            let batch = check(positions, cameras, n);
            download(client, forward_device(client, model, &upload(client, positions), &upload(client, cameras), batch, n))
        }
    }
}

/// Adjoint on whichever backend: (d positions, d cameras).
pub fn backward(backend: &Backend, model: CameraModel, positions: &[f32], cameras: &[f32], grad_projected: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    match backend {
        Backend::Cpu => backward_cpu(model, positions, cameras, grad_projected, n),
        Backend::Gpu { client, .. } => {
            let batch = check(positions, cameras, n);
            assert_eq!(grad_projected.len(), positions.len() / 3 * 4, "project backward: grad length");
            let (p, c, g) = (upload(client, positions), upload(client, cameras), upload(client, grad_projected));
            let (gp, gc) = backward_device(client, model, &p, &c, &g, batch, n);
            (download(client, gp), download(client, gc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, random, wgpu_backend};

    /// The rotation in f64, for the oracles.
    fn rotation(yaw: f32, pitch: f32, roll: f32) -> [f64; 9] {
        rotation_ypr(yaw, pitch, roll).map(|x| x as f64)
    }

    const N: usize = 40;

    /// Two items: weak perspective from (f, R, t) with v down, and their plain f64 projection.
    fn weak_case() -> (Vec<f32>, Vec<f32>, Vec<[f64; 3]>) {
        let positions: Vec<f32> = random(2 * 3 * N, 1).iter().map(|x| 80.0 * x).collect();
        let mut cameras = Vec::new();
        let mut expected = Vec::new();
        for (b, (yaw, f)) in [(0.3f32, 1.2f64), (-1.1, 0.8)].into_iter().enumerate() {
            let r = rotation(yaw, 0.2, -0.1);
            let t = [112.0, 110.0];
            cameras.extend(weak_params([
                [(f * r[0]) as f32, (f * r[1]) as f32, (f * r[2]) as f32, t[0] as f32],
                [(-f * r[3]) as f32, (-f * r[4]) as f32, (-f * r[5]) as f32, t[1] as f32],
            ]));
            for v in 0..N {
                let x: Vec<f64> = positions[(b * N + v) * 3..(b * N + v) * 3 + 3].iter().map(|&c| c as f64).collect();
                let rx: Vec<f64> = (0..3).map(|i| (0..3).map(|k| r[i * 3 + k] * x[k]).sum()).collect();
                expected.push([f * rx[0] + t[0], -f * rx[1] + t[1], -f * rx[2]]);
            }
        }
        (positions, cameras, expected)
    }

    /// Two items seen by pinhole cameras 500 mm away, one vertex pushed behind the camera.
    fn pinhole_case() -> (Vec<f32>, Vec<f32>) {
        let mut positions: Vec<f32> = random(2 * 3 * N, 2).iter().map(|x| 80.0 * x).collect();
        positions[3 * 5 + 2] = 700.0;
        let mut cameras = Vec::new();
        for yaw in [0.4f32, -0.7] {
            // Camera looks down −z of the model: flip y and z, then turn.
            let r = rotation(yaw, 0.1, 0.05);
            let flipped: Vec<f32> = (0..9).map(|i| if i / 3 == 0 { r[i] } else { -r[i] } as f32).collect();
            cameras.extend(pinhole_params([600.0, 610.0, 112.0, 108.0], flipped.try_into().unwrap(), [3.0, -4.0, 500.0]));
        }
        (positions, cameras)
    }

    #[test]
    fn weak_perspective_matches_the_plain_formula_and_faces_the_camera() {
        let (positions, cameras, expected) = weak_case();
        let out = forward_cpu(CameraModel::WeakPerspective, &positions, &cameras, N);
        for (i, e) in expected.iter().enumerate() {
            for k in 0..3 {
                assert!((out[4 * i + k] as f64 - e[k]).abs() < 1e-3, "vertex {i} channel {k}: {} vs {}", out[4 * i + k], e[k]);
            }
            assert_eq!(out[4 * i + 3], 1.0);
        }
    }

    #[test]
    fn pinhole_matches_the_plain_formula_and_flags_vertices_behind_the_camera() {
        let (positions, cameras) = pinhole_case();
        let out = forward_cpu(CameraModel::Pinhole, &positions, &cameras, N);
        for i in 0..2 * N {
            let c: Vec<f64> = cameras[(i / N) * 16..(i / N) * 16 + 16].iter().map(|&x| x as f64).collect();
            let x: Vec<f64> = positions[3 * i..3 * i + 3].iter().map(|&x| x as f64).collect();
            let xc: Vec<f64> = (0..3).map(|r| (0..3).map(|k| c[4 + 3 * r + k] * x[k]).sum::<f64>() + c[13 + r]).collect();
            if xc[2] <= NEAR as f64 {
                assert_eq!((out[4 * i + 2], out[4 * i + 3]), (f32::MAX, 0.0), "vertex {i} is behind the camera");
                continue;
            }
            let (u, v) = (c[0] * xc[0] / xc[2] + c[2], c[1] * xc[1] / xc[2] + c[3]);
            assert!((out[4 * i] as f64 - u).abs() < 1e-3 && (out[4 * i + 1] as f64 - v).abs() < 1e-3);
            assert!((out[4 * i + 2] as f64 - xc[2]).abs() < 1e-3 && (out[4 * i + 3] as f64 - 1.0 / xc[2]).abs() < 1e-8);
        }
        assert_eq!(out[4 * 5 + 3], 0.0, "the pushed vertex is flagged");
    }

    /// Central differences of L = Σ w ⊙ (u, v, ·, inv_w) against the adjoint, for every input;
    /// the depth's weight is zero (it carries no gradient), inv_w's is large enough to matter.
    fn check_adjoint(model: CameraModel, positions: &[f32], cameras: &[f32]) {
        let mut w = random(positions.len() / 3 * 4, 7);
        for (j, x) in w.iter_mut().enumerate() {
            match j % 4 {
                2 => *x = 0.0,
                3 => *x *= 1e5,
                _ => {}
            }
        }
        let (gx, gc) = backward_cpu(model, positions, cameras, &w, N);
        let loss_delta = |p: &[f32], c: &[f32], p2: &[f32], c2: &[f32]| -> f64 {
            let (a, b) = (forward_cpu(model, p, c, N), forward_cpu(model, p2, c2, N));
            (0..w.len()).map(|j| w[j] as f64 * (a[j] as f64 - b[j] as f64)).sum()
        };
        let mut checked = 0;
        for (inputs, grads, is_camera) in [(positions, &gx, false), (cameras, &gc, true)] {
            // Errors are relative to the gradient, or to 1 % of the largest one of its kind where
            // it is tiny (f32 cancellation, not the formula, dominates there).
            let floor = 1e-2 * grads.iter().fold(0.0f32, |m, g| m.max(g.abs())) as f64;
            for j in 0..inputs.len() {
                // Positions are in mm and the cameras 500 mm away: a 0.5 mm step keeps f32 rounding
                // far below the signal; camera parameters: a step relative to their size.
                let h = if is_camera { 1e-2 * inputs[j].abs().max(1.0) } else { 0.5 };
                let (mut plus, mut minus) = (inputs.to_vec(), inputs.to_vec());
                plus[j] += h;
                minus[j] -= h;
                let numeric = if is_camera {
                    loss_delta(positions, &plus, positions, &minus)
                } else {
                    loss_delta(&plus, cameras, &minus, cameras)
                } / (plus[j] as f64 - minus[j] as f64);
                let analytic = grads[j] as f64;
                let rel = (analytic - numeric).abs() / numeric.abs().max(analytic.abs()).max(floor);
                assert!(rel < 1e-2, "{model:?} {} {j}: analytic {analytic} vs numeric {numeric}", if is_camera { "camera" } else { "position" });
                checked += 1;
            }
        }
        assert!(checked > 200);
    }

    #[test]
    fn the_depth_adjoint_matches_central_differences() {
        for (model, positions, cameras) in [(CameraModel::WeakPerspective, weak_case().0, weak_case().1), (CameraModel::Pinhole, pinhole_case().0, pinhole_case().1)] {
            let w = random(positions.len() / 3, 9);
            let (gx, gc) = depth_backward_cpu(model, &positions, &cameras, &w, N);
            let loss = |p: &[f32], c: &[f32]| -> f64 {
                let out = forward_cpu(model, p, c, N);
                (0..w.len()).filter(|&v| out[4 * v + 3] > 0.0).map(|v| w[v] as f64 * out[4 * v + 2] as f64).sum()
            };
            let mut checked = 0;
            for (inputs, grads, is_camera) in [(&positions, &gx, false), (&cameras, &gc, true)] {
                let floor = 1e-2 * grads.iter().fold(0.0f32, |m, g| m.max(g.abs())) as f64;
                for j in 0..inputs.len() {
                    let h = if is_camera { 1e-2 * inputs[j].abs().max(1.0) } else { 0.5 };
                    let (mut plus, mut minus) = (inputs.to_vec(), inputs.to_vec());
                    plus[j] += h;
                    minus[j] -= h;
                    let numeric = if is_camera { loss(&positions, &plus) - loss(&positions, &minus) } else { loss(&plus, &cameras) - loss(&minus, &cameras) } / (plus[j] as f64 - minus[j] as f64);
                    let analytic = grads[j] as f64;
                    let rel = (analytic - numeric).abs() / numeric.abs().max(analytic.abs()).max(floor);
                    assert!(rel < 1e-2, "{model:?} {} {j}: analytic {analytic} vs numeric {numeric}", if is_camera { "camera" } else { "position" });
                    checked += 1;
                }
            }
            assert!(checked > 100);
        }
    }

    #[test]
    fn adjoints_match_central_differences() {
        let (positions, cameras, _) = weak_case();
        check_adjoint(CameraModel::WeakPerspective, &positions, &cameras);
        let (positions, cameras) = pinhole_case();
        check_adjoint(CameraModel::Pinhole, &positions, &cameras);
    }

    #[test]
    fn wgpu_kernels_match_their_native_twins() {
        let backend = wgpu_backend();
        let (wp, wc, _) = weak_case();
        let (pp, pc) = pinhole_case();
        for (model, positions, cameras) in [(CameraModel::WeakPerspective, wp, wc), (CameraModel::Pinhole, pp, pc)] {
            assert_close(&forward(&backend, model, &positions, &cameras, N), &forward_cpu(model, &positions, &cameras, N), 1e-5);
            let g = random(positions.len() / 3 * 4, 8);
            let (gx, gc) = backward(&backend, model, &positions, &cameras, &g, N);
            let (ex, ec) = backward_cpu(model, &positions, &cameras, &g, N);
            assert_close(&gx, &ex, 1e-5);
            assert_close(&gc, &ec, 1e-5);
        }
    }
}
