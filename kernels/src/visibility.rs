//! visibility: which vertices the camera sees, two ways.
//!
//! - By the normal test (PGN Eq. 5): the vertex's normal faces the camera. For weak perspective
//!   the direction towards the camera is −(a × b) (depth grows along a × b, see `project`); for a
//!   pinhole camera it is the camera centre c = −Rᵀt minus the vertex. Cheap, but blind to
//!   self-occlusion (a cheek behind the nose faces the camera yet is hidden).
//! - By the z-buffer (MGCNet's covisible map): the vertex is within `tolerance` of the rasterized
//!   depth at one of the covered pixels within one pixel of it (its pixel and the 8 around it),
//!   or one of those pixels shows one of its own triangles. The second clause keeps vertices on
//!   a silhouette — the mesh's border, the steep last rows — whose pixel centre falls just
//!   outside their sliver triangles and whose neighbours show nearer surface of the same face.
//!
//! Both give 1.0 (visible) or 0.0 per vertex. Not differentiable (masks).

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use crate::normals::Adjacency;
use crate::project::{CameraModel, CAMERA_PARAMS};
use crate::rasterize::Raster;
use cubecl::prelude::*;

/// Normal test, native: B × N normals (model space) and the cameras that project them.
pub fn by_normals_cpu(model: CameraModel, positions: &[f32], normals: &[f32], cameras: &[f32], n: usize) -> Vec<f32> {
    let batch = positions.len() / (3 * n);
    assert_eq!(cameras.len(), batch * CAMERA_PARAMS, "visibility: cameras length");
    let mut out = vec![0.0; batch * n];
    for (i, o) in out.iter_mut().enumerate() {
        let c = &cameras[(i / n) * CAMERA_PARAMS..(i / n + 1) * CAMERA_PARAMS];
        let (x, nv) = (&positions[3 * i..3 * i + 3], &normals[3 * i..3 * i + 3]);
        let towards = match model {
            CameraModel::WeakPerspective => crate::project::weak_depth_axis(c).map(|x| -x),
            CameraModel::Pinhole => {
                let (r, t) = (&c[4..13], &c[13..16]);
                let centre = [0, 1, 2].map(|k| -(r[k] * t[0] + r[3 + k] * t[1] + r[6 + k] * t[2]));
                [centre[0] - x[0], centre[1] - x[1], centre[2] - x[2]]
            }
        };
        *o = if nv[0] * towards[0] + nv[1] * towards[1] + nv[2] * towards[2] > 0.0 { 1.0 } else { 0.0 };
    }
    out
}

/// Z-buffer test, native: the projected vertices (B × N × 4) against the raster's depth and
/// triangle ids (`adjacency` lists each vertex's triangles).
pub fn by_zbuffer_cpu(raster: &Raster, projected: &[f32], n: usize, tolerance: f32, adjacency: &Adjacency) -> Vec<f32> {
    let s = raster.shape;
    assert_eq!(projected.len(), s.batch * n * 4, "visibility: projected length");
    (0..s.batch * n)
        .map(|i| {
            let p = &projected[4 * i..4 * i + 4];
            if p[3] <= 0.0 {
                return 0.0;
            }
            let (x0, y0) = (p[0].floor() - 1.0, p[1].floor() - 1.0);
            for k in 0..9 {
                let (px, py) = (x0 + (k % 3) as f32, y0 + (k / 3) as f32);
                if px < 0.0 || py < 0.0 || px >= s.width as f32 || py >= s.height as f32 {
                    continue;
                }
                let pixel = (i / n) * s.pixels() + py as usize * s.width + px as usize;
                let t = raster.tri[pixel];
                let v = i % n;
                let own = || adjacency.triangles_of[adjacency.offsets[v] as usize..adjacency.offsets[v + 1] as usize].contains(&(t.wrapping_sub(1)));
                if t != 0 && (p[2] <= raster.depth[pixel] + tolerance || own()) {
                    return 1.0;
                }
            }
            0.0
        })
        .collect()
}

/// Normal test: one thread per (item, vertex).
#[cube(launch_unchecked)]
fn normals_kernel(positions: &[f32], normals: &[f32], cameras: &[f32], out: &mut [f32], n: usize, pinhole: u32) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        let c = (i / n) * 16;
        let mut tx = 0.0f32;
        let mut ty = 0.0f32;
        let mut tz = 0.0f32;
        if pinhole == 1u32 {
            // Camera centre −Rᵀt minus the vertex.
            for k in 0..3usize {
                let centre = -(cameras[c + 4 + k] * cameras[c + 13] + cameras[c + 7 + k] * cameras[c + 14] + cameras[c + 10 + k] * cameras[c + 15]);
                let d = centre - positions[3 * i + k];
                if k == 0 {
                    tx = d;
                } else if k == 1 {
                    ty = d;
                } else {
                    tz = d;
                }
            }
        } else {
            let a0 = cameras[c];
            let a1 = cameras[c + 1];
            let a2 = cameras[c + 2];
            let b0 = cameras[c + 4];
            let b1 = cameras[c + 5];
            let b2 = cameras[c + 6];
            tx = -(a1 * b2 - a2 * b1);
            ty = -(a2 * b0 - a0 * b2);
            tz = -(a0 * b1 - a1 * b0);
        }
        let facing = normals[3 * i] * tx + normals[3 * i + 1] * ty + normals[3 * i + 2] * tz;
        let mut visible = 0.0f32;
        if facing > 0.0f32 {
            visible = 1.0f32;
        }
        out[i] = visible;
    }
}

/// Normal test on whichever backend.
pub fn by_normals(backend: &Backend, model: CameraModel, positions: &[f32], normals: &[f32], cameras: &[f32], n: usize) -> Vec<f32> {
    let Backend::Gpu { client, .. } = backend else { return by_normals_cpu(model, positions, normals, cameras, n) };
    let batch = positions.len() / (3 * n);
    assert_eq!(cameras.len(), batch * CAMERA_PARAMS, "visibility: cameras length");
    let out = client.empty(batch * n * 4);
    let (count, dim) = grid_1d(batch * n);
    #[allow(unsafe_code)]
    // SAFETY: indices follow the checked lengths.
    unsafe {
        normals_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(upload(client, positions), positions.len()),
            BufferArg::from_raw_parts(upload(client, normals), normals.len()),
            BufferArg::from_raw_parts(upload(client, cameras), cameras.len()),
            BufferArg::from_raw_parts(out.clone(), batch * n),
            n,
            (model == CameraModel::Pinhole) as u32,
        );
    }
    download(client, out)
}

/// Z-buffer test: one thread per (item, vertex).
#[cube(launch_unchecked)]
fn zbuffer_kernel(
    projected: &[f32],
    tri: &[u32],
    depth: &[f32],
    adjacency_offsets: &[u32],
    adjacency: &[u32],
    out: &mut [f32],
    width: usize,
    height: usize,
    n: usize,
    tolerance: f32,
) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        let x0 = f32::floor(projected[4 * i]) - 1.0f32;
        let y0 = f32::floor(projected[4 * i + 1]) - 1.0f32;
        let mut visible = 0.0f32;
        if projected[4 * i + 3] > 0.0f32 {
            for k in 0..9u32 {
                let px = x0 + (k % 3u32) as f32;
                let py = y0 + (k / 3u32) as f32;
                if px >= 0.0f32 && py >= 0.0f32 && px < width as f32 && py < height as f32 {
                    let pixel = (i / n) * width * height + py as usize * width + px as usize;
                    let t = tri[pixel];
                    if t != 0u32 {
                        if projected[4 * i + 2] <= depth[pixel] + tolerance {
                            visible = 1.0f32;
                        }
                        let v = i % n;
                        for j in adjacency_offsets[v] as usize..adjacency_offsets[v + 1] as usize {
                            if adjacency[j] + 1u32 == t {
                                visible = 1.0f32;
                            }
                        }
                    }
                }
            }
        }
        out[i] = visible;
    }
}

/// Z-buffer test on whichever backend.
pub fn by_zbuffer(backend: &Backend, raster: &Raster, projected: &[f32], n: usize, tolerance: f32, adjacency: &Adjacency) -> Vec<f32> {
    let Backend::Gpu { client, .. } = backend else { return by_zbuffer_cpu(raster, projected, n, tolerance, adjacency) };
    let s = raster.shape;
    assert_eq!(projected.len(), s.batch * n * 4, "visibility: projected length");
    let out = client.empty(s.batch * n * 4);
    let (count, dim) = grid_1d(s.batch * n);
    #[allow(unsafe_code)]
    // SAFETY: the pixel index is checked against the image before it is read.
    unsafe {
        zbuffer_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(upload(client, projected), projected.len()),
            BufferArg::from_raw_parts(client.create_from_slice(u32::as_bytes(&raster.tri)), raster.tri.len()),
            BufferArg::from_raw_parts(upload(client, &raster.depth), raster.depth.len()),
            BufferArg::from_raw_parts(client.create_from_slice(u32::as_bytes(&adjacency.offsets)), adjacency.offsets.len()),
            BufferArg::from_raw_parts(client.create_from_slice(u32::as_bytes(&adjacency.triangles_of)), adjacency.triangles_of.len()),
            BufferArg::from_raw_parts(out.clone(), s.batch * n),
            s.width,
            s.height,
            n,
            tolerance,
        );
    }
    download(client, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normals::{self, Adjacency};
    use crate::project::{self, weak_params};
    use crate::rasterize::{self, RasterShape};
    use crate::testing::{rotation, test_mesh, wgpu_backend};

    /// The bumpy test mesh seen frontally and at a 75° yaw, weak perspective into 128 × 128.
    fn views() -> Vec<(Vec<f32>, Vec<f32>, Vec<f32>, usize, Vec<f32>, Raster, Adjacency)> {
        let (mesh, triangles) = test_mesh(40, 0, 1);
        let n = mesh.len() / 3;
        let adjacency = Adjacency::new(n, &triangles);
        let normals = normals::forward_cpu(&mesh, &triangles, &adjacency, n);
        [0.0f32, 75.0]
            .into_iter()
            .map(|yaw| {
                let r = rotation(yaw.to_radians(), 0.0);
                let f = 0.9;
                let cameras = weak_params([[f * r[0], f * r[1], f * r[2], 64.0], [-f * r[3], -f * r[4], -f * r[5], 64.0]]).to_vec();
                let projected = project::forward_cpu(CameraModel::WeakPerspective, &mesh, &cameras, n);
                let raster = rasterize::forward_cpu(RasterShape { batch: 1, width: 128, height: 128 }, &projected, &triangles, n);
                (mesh.clone(), normals.clone(), cameras, n, projected, raster, adjacency.clone())
            })
            .collect()
    }

    #[test]
    fn the_two_tests_agree_frontally_and_part_when_the_surface_hides_itself() {
        let mut disagreement = Vec::new();
        for (mesh, normals, cameras, n, projected, raster, adjacency) in views() {
            let by_n = by_normals_cpu(CameraModel::WeakPerspective, &mesh, &normals, &cameras, n);
            let by_z = by_zbuffer_cpu(&raster, &projected, n, 0.5, &adjacency);
            let differ = by_n.iter().zip(&by_z).filter(|(a, b)| a != b).count();
            disagreement.push(differ as f64 / n as f64);
        }
        println!("normal test vs z-buffer: differ on {:.2} % of vertices frontally, {:.2} % at 75° yaw", 100.0 * disagreement[0], 100.0 * disagreement[1]);
        assert!(disagreement[0] <= 0.01, "frontal: the tests differ on {:.2} % of vertices", 100.0 * disagreement[0]);
        assert!(disagreement[1] > disagreement[0] + 0.02, "at 75° self-occlusion must show: {disagreement:?}");
    }

    #[test]
    fn the_front_faces_the_camera_and_the_back_does_not() {
        let (mesh, normals, cameras, n, _, _, _) = views().remove(0);
        let flipped: Vec<f32> = normals.iter().map(|x| -x).collect();
        let front = by_normals_cpu(CameraModel::WeakPerspective, &mesh, &normals, &cameras, n);
        let back = by_normals_cpu(CameraModel::WeakPerspective, &mesh, &flipped, &cameras, n);
        assert!(front.iter().all(|&v| v == 1.0) && back.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn wgpu_normal_test_matches_its_native_twin_for_both_cameras() {
        let backend = wgpu_backend();
        let (mesh, normals, cameras, n, _, _, _) = views().remove(1);
        let weak = by_normals_cpu(CameraModel::WeakPerspective, &mesh, &normals, &cameras, n);
        assert_eq!(by_normals(&backend, CameraModel::WeakPerspective, &mesh, &normals, &cameras, n), weak);
        assert!(weak.contains(&0.0) && weak.contains(&1.0));
        let r = rotation(1.1, 0.1);
        let flipped: Vec<f32> = (0..9).map(|i| if i / 3 == 0 { r[i] } else { -r[i] }).collect();
        let pinhole = crate::project::pinhole_params([300.0, 300.0, 64.0, 64.0], flipped.try_into().unwrap(), [5.0, 0.0, 250.0]).to_vec();
        let expected = by_normals_cpu(CameraModel::Pinhole, &mesh, &normals, &pinhole, n);
        assert_eq!(by_normals(&backend, CameraModel::Pinhole, &mesh, &normals, &pinhole, n), expected);
        assert!(expected.contains(&0.0) && expected.contains(&1.0));
    }

    #[test]
    fn wgpu_kernel_matches_its_native_twin() {
        let backend = wgpu_backend();
        for (_, _, _, n, projected, raster, adjacency) in views() {
            assert_eq!(by_zbuffer(&backend, &raster, &projected, n, 0.5, &adjacency), by_zbuffer_cpu(&raster, &projected, n, 0.5, &adjacency));
        }
    }
}
