//! sample: bilinear sampling of a batch of images at arbitrary positions — PGN's texture
//! sampling (Eq. 2: the colour of the source image at each projected vertex) and, later, view
//! synthesis at a warped pixel map. Positions are in pixels with the pixel (px, py) centred at
//! (px + ½, py + ½); taps outside the image read 0 (zero padding), so the result and its
//! gradient are continuous everywhere.
//!
//! Adjoint to the sample positions: d u = Σ_c g_c ∂s_c/∂u with
//! ∂s/∂u = (1 − f_y)(I₁₀ − I₀₀) + f_y (I₁₁ − I₀₁) and ∂s/∂v = (1 − f_x)(I₀₁ − I₀₀) + f_x (I₁₁ − I₁₀).
//! Images are data (photographs), so no gradient is produced for them.

use crate::backend::Backend;
use crate::launch::{download, grid_1d, upload};
use cubecl::prelude::*;
use cubecl::server::Handle;

/// Sizes: `batch` images of `height` × `width` × `channels` (row-major, channels last), each
/// sampled at `points` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleShape {
    pub batch: usize,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub points: usize,
}

impl SampleShape {
    fn check(&self, images: &[f32], positions: &[f32]) {
        assert_eq!(images.len(), self.batch * self.height * self.width * self.channels, "sample: image length");
        assert_eq!(positions.len(), self.batch * self.points * 2, "sample: positions length");
    }
}

/// The four taps around a position: ((x₀, y₀), f_x, f_y).
fn taps(u: f32, v: f32) -> (i64, i64, f32, f32) {
    let (x, y) = (u - 0.5, v - 0.5);
    let (x0, y0) = (x.floor(), y.floor());
    (x0 as i64, y0 as i64, x - x0, y - y0)
}

fn texel(images: &[f32], s: SampleShape, b: usize, x: i64, y: i64, c: usize) -> f32 {
    if x < 0 || y < 0 || x >= s.width as i64 || y >= s.height as i64 {
        0.0
    } else {
        images[((b * s.height + y as usize) * s.width + x as usize) * s.channels + c]
    }
}

/// Native forward: B × points × channels; items in parallel.
pub fn forward_cpu(s: SampleShape, images: &[f32], positions: &[f32]) -> Vec<f32> {
    s.check(images, positions);
    crate::parallel::map(s.batch, |b| {
        let mut out = vec![0.0; s.points * s.channels];
        for m in 0..s.points {
            let i = b * s.points + m;
            let (x0, y0, fx, fy) = taps(positions[2 * i], positions[2 * i + 1]);
            for c in 0..s.channels {
                let t = |dx, dy| texel(images, s, b, x0 + dx, y0 + dy, c);
                out[m * s.channels + c] = (1.0 - fy) * ((1.0 - fx) * t(0, 0) + fx * t(1, 0)) + fy * ((1.0 - fx) * t(0, 1) + fx * t(1, 1));
            }
        }
        out
    })
    .concat()
}

/// Native adjoint to the positions: B × points × 2; items in parallel.
pub fn backward_cpu(s: SampleShape, images: &[f32], positions: &[f32], grad_out: &[f32]) -> Vec<f32> {
    s.check(images, positions);
    assert_eq!(grad_out.len(), s.batch * s.points * s.channels, "sample backward: grad length");
    crate::parallel::map(s.batch, |b| {
        let mut g = vec![0.0; 2 * s.points];
        for m in 0..s.points {
            let i = b * s.points + m;
            let (x0, y0, fx, fy) = taps(positions[2 * i], positions[2 * i + 1]);
            for c in 0..s.channels {
                let t = |dx, dy| texel(images, s, b, x0 + dx, y0 + dy, c);
                let go = grad_out[i * s.channels + c];
                g[2 * m] += go * ((1.0 - fy) * (t(1, 0) - t(0, 0)) + fy * (t(1, 1) - t(0, 1)));
                g[2 * m + 1] += go * ((1.0 - fx) * (t(0, 1) - t(0, 0)) + fx * (t(1, 1) - t(1, 0)));
            }
        }
        g
    })
    .concat()
}

/// The texel (x, y) of item b, channel c, or 0 outside the image.
#[cube]
fn fetch(images: &[f32], b: usize, x: i32, y: i32, c: usize, width: usize, height: usize, channels: usize) -> f32 {
    let mut value = 0.0f32;
    if x >= 0 && y >= 0 && (x as usize) < width && (y as usize) < height {
        value = images[((b * height + y as usize) * width + x as usize) * channels + c];
    }
    value
}

/// One thread per (item, point, channel) for the forward; `backward` writes per (item, point).
/// A point's position is at `stride · i` (2: (u, v) pairs; 4: `project`'s [u, v, depth, inv_w],
/// read in place); `accumulate` adds the adjoint into `out` at that stride instead of writing it.
#[cube(launch_unchecked)]
fn sample_kernel(
    images: &[f32],
    positions: &[f32],
    grad_out: &[f32],
    out: &mut [f32],
    width: usize,
    height: usize,
    channels: usize,
    points: usize,
    backward: u32,
    stride: usize,
    accumulate: u32,
) {
    let pos = ABSOLUTE_POS;
    let mut work = out.len();
    if backward == 1u32 {
        work = positions.len() / stride;
    }
    if pos < work {
        let mut i = pos / channels;
        if backward == 1u32 {
            i = pos;
        }
        let b = i / points;
        let x = positions[stride * i] - 0.5f32;
        let y = positions[stride * i + 1] - 0.5f32;
        let xf = f32::floor(x);
        let yf = f32::floor(y);
        let fx = x - xf;
        let fy = y - yf;
        let x0 = xf as i32;
        let y0 = yf as i32;
        if backward == 1u32 {
            let mut gu = 0.0f32;
            let mut gv = 0.0f32;
            for c in 0..channels {
                let t00 = fetch(images, b, x0, y0, c, width, height, channels);
                let t10 = fetch(images, b, x0 + 1, y0, c, width, height, channels);
                let t01 = fetch(images, b, x0, y0 + 1, c, width, height, channels);
                let t11 = fetch(images, b, x0 + 1, y0 + 1, c, width, height, channels);
                let go = grad_out[i * channels + c];
                gu += go * ((1.0f32 - fy) * (t10 - t00) + fy * (t11 - t01));
                gv += go * ((1.0f32 - fx) * (t01 - t00) + fx * (t11 - t10));
            }
            if accumulate == 1u32 {
                out[stride * i] += gu;
                out[stride * i + 1] += gv;
            } else {
                out[stride * i] = gu;
                out[stride * i + 1] = gv;
            }
        } else {
            let c = pos % channels;
            let t00 = fetch(images, b, x0, y0, c, width, height, channels);
            let t10 = fetch(images, b, x0 + 1, y0, c, width, height, channels);
            let t01 = fetch(images, b, x0, y0 + 1, c, width, height, channels);
            let t11 = fetch(images, b, x0 + 1, y0 + 1, c, width, height, channels);
            out[pos] = (1.0f32 - fy) * ((1.0f32 - fx) * t00 + fx * t10) + fy * ((1.0f32 - fx) * t01 + fx * t11);
        }
    }
}

fn launch(backend: &Backend, s: SampleShape, images: &[f32], positions: &[f32], grad_out: Option<&[f32]>) -> Vec<f32> {
    let Backend::Gpu { client, .. } = backend else { unreachable!("device launch on the CPU backend") };
    let out_len = if grad_out.is_some() { positions.len() } else { s.batch * s.points * s.channels };
    let out = client.empty(out_len * 4);
    let grad = grad_out.map(|g| upload(client, g));
    launch_device(client, s, &upload(client, images), &upload(client, positions), 2, grad.as_ref(), &out, out_len, false);
    download(client, out)
}

/// Device forward on handles already on the device, the positions at `stride` (2 or 4).
pub fn forward_device(client: &cubecl::client::Client, s: SampleShape, images: &Handle, positions: &Handle, stride: usize) -> Handle {
    let out_len = s.batch * s.points * s.channels;
    let out = client.empty(out_len * 4);
    launch_device(client, s, images, positions, stride, None, &out, out_len, false);
    out
}

/// Device adjoint to the positions, added into `into` (positions' layout, at `stride`): the
/// sampled points' share of d projected, where the interpolation's share already is.
pub fn backward_accumulate_device(client: &cubecl::client::Client, s: SampleShape, images: &Handle, positions: &Handle, stride: usize, grad_out: &Handle, into: &Handle) {
    launch_device(client, s, images, positions, stride, Some(grad_out), into, s.batch * s.points * stride, true);
}

fn launch_device(client: &cubecl::client::Client, s: SampleShape, images: &Handle, positions: &Handle, stride: usize, grad_out: Option<&Handle>, out: &Handle, out_len: usize, accumulate: bool) {
    let n_points = s.batch * s.points;
    let work = if grad_out.is_some() { n_points } else { out_len };
    let unused;
    let grad = match grad_out {
        Some(g) => g,
        None => {
            unused = client.create_from_slice(f32::as_bytes(&[0.0]));
            &unused
        }
    };
    let (count, dim) = grid_1d(work);
    #[allow(unsafe_code)]
    // SAFETY: texel reads are bounds-checked in `fetch`; other indices follow the shape.
    unsafe {
        sample_kernel::launch_unchecked(
            client,
            count,
            dim,
            BufferArg::from_raw_parts(images.clone(), s.batch * s.height * s.width * s.channels),
            BufferArg::from_raw_parts(positions.clone(), n_points * stride),
            BufferArg::from_raw_parts(grad.clone(), if grad_out.is_some() { n_points * s.channels } else { 1 }),
            BufferArg::from_raw_parts(out.clone(), out_len),
            s.width,
            s.height,
            s.channels,
            s.points,
            grad_out.is_some() as u32,
            stride,
            accumulate as u32,
        );
    }
}

/// Forward on whichever backend.
pub fn forward(backend: &Backend, s: SampleShape, images: &[f32], positions: &[f32]) -> Vec<f32> {
    s.check(images, positions);
    match backend {
        Backend::Cpu => forward_cpu(s, images, positions),
        Backend::Gpu { .. } => launch(backend, s, images, positions, None),
    }
}

/// Adjoint to the positions on whichever backend.
pub fn backward(backend: &Backend, s: SampleShape, images: &[f32], positions: &[f32], grad_out: &[f32]) -> Vec<f32> {
    s.check(images, positions);
    match backend {
        Backend::Cpu => backward_cpu(s, images, positions, grad_out),
        Backend::Gpu { .. } => launch(backend, s, images, positions, Some(grad_out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, random, wgpu_backend};

    /// Two 3-channel 20 × 16 images of a smooth pattern, sampled at 50 points each, some near and
    /// past the border.
    fn case() -> (SampleShape, Vec<f32>, Vec<f32>) {
        let s = SampleShape { batch: 2, width: 20, height: 16, channels: 3, points: 50 };
        let mut images = Vec::new();
        for b in 0..2 {
            for y in 0..16 {
                for x in 0..20 {
                    for c in 0..3 {
                        images.push(((x as f32 * 0.4 + c as f32).sin() + (y as f32 * 0.3 + b as f32).cos()) * 0.5);
                    }
                }
            }
        }
        let r = random(2 * 50 * 2, 21);
        let positions = r.iter().enumerate().map(|(i, x)| if i % 2 == 0 { 10.0 + 11.0 * x } else { 8.0 + 9.0 * x }).collect();
        (s, images, positions)
    }

    #[test]
    fn reproduces_texels_at_pixel_centres_and_interpolates_linearly_between() {
        let (s, images, _) = case();
        // At the centre of texel (3, 5) of item 1, and halfway between (3, 5) and (4, 5).
        let positions: Vec<f32> = [[0.0f32, 0.0]; 50].iter().flatten().copied().chain([3.5, 5.5, 4.0, 5.5].into_iter().chain([0.0; 96])).collect();
        let out = forward_cpu(s, &images, &positions);
        let texel = |x: usize, y: usize, c: usize| images[((16 + y) * 20 + x) * 3 + c];
        for c in 0..3 {
            assert!((out[(50) * 3 + c] - texel(3, 5, c)).abs() < 1e-6);
            assert!((out[(51) * 3 + c] - 0.5 * (texel(3, 5, c) + texel(4, 5, c))).abs() < 1e-6);
        }
        // Far outside: zero.
        let outside = forward_cpu(SampleShape { points: 1, batch: 1, ..s }, &images[..20 * 16 * 3], &[-5.0, 40.0]);
        assert_eq!(outside, vec![0.0; 3]);
    }

    #[test]
    fn adjoint_matches_central_differences() {
        let (s, images, positions) = case();
        let w = random(s.batch * s.points * s.channels, 22);
        let g = backward_cpu(s, &images, &positions, &w);
        let loss = |p: &[f32]| -> f64 { forward_cpu(s, &images, p).iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum() };
        for j in 0..positions.len() {
            let (mut plus, mut minus) = (positions.clone(), positions.clone());
            plus[j] += 1e-3;
            minus[j] -= 1e-3;
            let numeric = (loss(&plus) - loss(&minus)) / (plus[j] as f64 - minus[j] as f64);
            // Bilinear sampling is piecewise linear: a step that crosses a texel edge is not
            // comparable, skip those few.
            let frac = (positions[j] - 0.5).rem_euclid(1.0);
            if !(0.01..0.99).contains(&frac) {
                continue;
            }
            let rel = (g[j] as f64 - numeric).abs() / numeric.abs().max(1e-2);
            assert!(rel < 1e-2, "position {j}: analytic {} vs numeric {numeric}", g[j]);
        }
    }

    #[test]
    fn wgpu_kernels_match_their_native_twins() {
        let (s, images, positions) = case();
        let backend = wgpu_backend();
        assert_close(&forward(&backend, s, &images, &positions), &forward_cpu(s, &images, &positions), 1e-5);
        let w = random(s.batch * s.points * s.channels, 23);
        assert_close(&backward(&backend, s, &images, &positions, &w), &backward_cpu(s, &images, &positions, &w), 1e-5);
    }
}
