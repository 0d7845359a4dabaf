//! End-to-end: the render stages on synthetic frames at their exact parameters.

use faceforge::run::{iterate, prepare};
use faceforge_components::{Albedo, Frame, GroundTruth, Illumination, Image, Mesh, Normals, Pose, Rendered, VertexColors, Visibility};
use faceforge_e2e::scene;
use faceforge_kernels::normals::Adjacency;
use faceforge_kernels::project;
use faceforge_kernels::rasterize::{self, RasterShape};
use faceforge_kernels::visibility;
use faceforge_kernels::Backend;
use faceforge_systems::render::shade_vertices;

fn synthetic(preset: &str, subjects: u32, visibility: &str, model: &str, size: usize) -> String {
    format!(
        r#"Scene(
    data: Synthetic(preset: {preset}, subjects: {subjects}, size: {size}, seed: 4, landmark_noise: 0.0),
    model: Procedural(preset: {model}),
    backend: Cpu,
    systems: [
        (name: "oracle_coeffs"), (name: "oracle_lighting"), (name: "oracle_pose"),
        (name: "reconstruct"), (name: "vertex_normals"),
        (name: "sample_texture"), (name: "visibility", settings: (method: {visibility})),
        (name: "render"),
    ],
    outputs: (dir: "unused"),
)"#
    )
}

/// Sampled colours against the renderer's vertex colours at one image size: (vertices compared,
/// fraction within 1/255, mean error, worst error).
fn sampled_against_rendered(size: usize) -> (usize, f64, f64, f32) {
    let mut p = prepare(&scene(&synthetic("AflwLike", 3, "ZBuffer", "Tiny", size), "gt.ron")).unwrap();
    iterate(&mut p, 1, false).unwrap();
    let n = p.model.n_vertices();
    let adjacency = Adjacency::new(n, p.model.triangles());
    let mut q = p.world.query::<(&Frame, &Image, &Rendered, &VertexColors, &Visibility, &Normals, &Albedo, &Illumination)>();
    let (mut compared, mut within, mut worst, mut sum) = (0usize, 0usize, 0.0f32, 0.0f64);
    for (frame, image, rendered, sampled, visible, normals, albedo, light) in q.iter(&p.world) {
        // The render stage redraws the synthetic image exactly where the face is.
        for px in 0..rendered.mask.len() {
            if rendered.mask[px] > 0.0 {
                for c in 0..3 {
                    assert!((rendered.color[3 * px + c].clamp(0.0, 1.0) - image.rgb[3 * px + c]).abs() < 1e-6, "{}: pixel {px}", frame.name);
                }
            }
        }
        let colours = shade_vertices(&Backend::Cpu, &normals.xyz, &albedo.rgb, &light.sh, n);
        for v in 0..n {
            // Visible vertices whose four surrounding pixels (the bilinear footprint) all show the
            // vertex's own triangles: not on a silhouette, not behind an occluding fold.
            let own = &adjacency.triangles_of[adjacency.offsets[v] as usize..adjacency.offsets[v + 1] as usize];
            let (u, w) = (rendered.projected[4 * v] - 0.5, rendered.projected[4 * v + 1] - 0.5);
            let (x0, y0, s) = (u.floor() as i64, w.floor() as i64, size as i64);
            let inside = (0..4).all(|k| {
                let (x, y) = (x0 + k % 2, y0 + k / 2);
                x >= 0 && y >= 0 && x < s && y < s && own.contains(&rendered.tri[(y * s + x) as usize].wrapping_sub(1))
            });
            if visible.visible[v] == 0.0 || !inside {
                continue;
            }
            let err = (0..3).map(|c| (sampled.rgb[3 * v + c] - colours[3 * v + c].clamp(0.0, 1.0)).abs()).fold(0.0f32, f32::max);
            compared += 1;
            within += (err <= 1.0 / 255.0) as usize;
            worst = worst.max(err);
            sum += err as f64;
        }
    }
    let (fraction, mean) = (within as f64 / compared as f64, sum / compared as f64);
    println!(
        "{size} px: sampled vs rendered vertex colours on {compared} visible vertices: {:.1} % within 1/255, mean {:.2}/255, worst {:.1}/255",
        100.0 * fraction,
        255.0 * mean,
        255.0 * worst
    );
    (compared, fraction, mean, worst)
}

/// At the ground-truth parameters, sampling the image at the projected visible vertices gives
/// back the colours the renderer gave those vertices. Bilinear sampling reads the four pixel
/// centres around a vertex, up to ½ pixel away on the piecewise-linear colour surface, so the
/// agreement is exact only in the limit of fine pixels: the test checks that the error is small
/// and halves when the pixels halve.
#[test]
fn at_the_ground_truth_sampled_colours_equal_the_rendered_vertex_colours() {
    let (_, _, coarse_mean, _) = sampled_against_rendered(448);
    let (compared, fraction, mean, _) = sampled_against_rendered(896);
    assert!(compared > 1000, "{compared} vertices compared");
    assert!(fraction >= 0.85, "{:.1} % within 1/255", 100.0 * fraction);
    assert!(mean <= 0.5 / 255.0, "mean error {}/255", 255.0 * mean);
    assert!(mean <= 0.6 * coarse_mean, "the error must fall with the pixel size: {} then {}", 255.0 * coarse_mean, 255.0 * mean);
}

#[test]
fn the_normal_test_and_the_zbuffer_agree_frontally_and_part_at_high_yaw() {
    let mut p = prepare(&scene(&synthetic("FlorenceLike", 1, "Normals", "Default", 224), "vis.ron")).unwrap();
    iterate(&mut p, 1, false).unwrap();
    let (n, triangles) = (p.model.n_vertices(), p.model.triangles().to_vec());
    let mut q = p.world.query::<(&Frame, &GroundTruth, &Mesh, &Pose, &Visibility)>();
    let mut rows = Vec::new();
    for (_, truth, mesh, pose, by_normals) in q.iter(&p.world) {
        let (model, camera) = pose.camera();
        let projected = project::forward_cpu(model, &mesh.positions, &camera, n);
        let raster = rasterize::forward_cpu(RasterShape { batch: 1, width: 224, height: 224 }, &projected, &triangles, n);
        let by_z = visibility::by_zbuffer_cpu(&raster, &projected, n, 1.0, &Adjacency::new(n, &triangles));
        let differ = by_z.iter().zip(&by_normals.visible).filter(|(a, b)| a != b).count() as f64 / n as f64;
        let yaw = match &truth.pose {
            Some(_) => {
                // The florence-like clip sweeps yaw from −80° to 80° over its 9 frames.
                -80.0 + 20.0 * rows.len() as f64
            }
            None => unreachable!(),
        };
        rows.push((yaw, differ));
    }
    for (yaw, differ) in &rows {
        println!("yaw {yaw:>5.0}°: normal test and z-buffer differ on {:.2} % of vertices", 100.0 * differ);
    }
    let frontal = rows.iter().find(|(y, _)| y.abs() < 1.0).unwrap().1;
    let side = rows.iter().filter(|(y, _)| y.abs() >= 70.0).map(|r| r.1).fold(f64::INFINITY, f64::min);
    assert!(frontal <= 0.01, "frontal disagreement {:.2} %", 100.0 * frontal);
    assert!(side > frontal + 0.01, "at |yaw| ≥ 70° the disagreement ({:.2} %) must exceed the frontal one", 100.0 * side);
}
