//! End-to-end: the render stages on synthetic frames at their exact parameters.

use bevy_ecs::entity::Entity;
use faceforge::run::{iterate, prepare};
use faceforge_components::{Albedo, Frame, GroundTruth, Illumination, Image, Mesh, Normals, Pose, Rendered, RenderedSwaps, VertexColors, Visibility};
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
        (name: "sample_texture", keep: true), (name: "visibility", keep: true, settings: (method: {visibility})),
        (name: "render", keep: true),
    ],
    outputs: (dir: "unused"),
)"#
    )
}

/// Vertices whose bilinear footprint (the four pixel centres around the projected vertex) all
/// show one of the vertex's own triangles: not on a silhouette, not beside the mesh's border, not
/// behind a fold. There, sampling the image reads the vertex's own colour surface.
fn footprint_on_own_triangles(rendered: &Rendered, adjacency: &Adjacency, size: usize) -> Vec<bool> {
    let s = size as i64;
    (0..rendered.projected.len() / 4)
        .map(|v| {
            let own = &adjacency.triangles_of[adjacency.offsets[v] as usize..adjacency.offsets[v + 1] as usize];
            let (x0, y0) = ((rendered.projected[4 * v] - 0.5).floor() as i64, (rendered.projected[4 * v + 1] - 0.5).floor() as i64);
            (0..4).all(|k| {
                let (x, y) = (x0 + k % 2, y0 + k / 2);
                x >= 0 && y >= 0 && x < s && y < s && own.contains(&rendered.tri[(y * s + x) as usize].wrapping_sub(1))
            })
        })
        .collect()
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
        let inside = footprint_on_own_triangles(rendered, &adjacency, size);
        for v in 0..n {
            if visible.visible[v] == 0.0 || !inside[v] {
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
/// and falls when the pixels halve. The bounds were re-measured on the canonical face (issue 20):
/// its albedo has the lash line, iris, lid and lip edges 2 mm wide, so at the tiny preset
/// neighbouring vertices differ by up to 34/255 where the analytic face's widest step was a few
/// 255ths; the error (gradient × up to ½ px) grew with them: 80 % within 1/255 (89 % before,
/// bound 85 %), mean 0.84/255 (0.43 before, bound 0.5/255), 0.62 of the coarse error at half the pixel size (was ≤ 0.6;
/// the compared vertices differ between the sizes: 3,048 and 3,325).
#[test]
fn at_the_ground_truth_sampled_colours_equal_the_rendered_vertex_colours() {
    let (_, _, coarse_mean, _) = sampled_against_rendered(448);
    let (compared, fraction, mean, _) = sampled_against_rendered(896);
    assert!(compared > 1000, "{compared} vertices compared");
    assert!(fraction >= 0.78, "{:.1} % within 1/255", 100.0 * fraction);
    assert!(mean <= 0.9 / 255.0, "mean error {}/255", 255.0 * mean);
    assert!(mean <= 0.65 * coarse_mean, "the error must fall with the pixel size: {} then {}", 255.0 * coarse_mean, 255.0 * mean);
}

/// Compared on the face's front: the vertices whose mean-face normal turns towards the camera by
/// more than 17° (n_z > 0.3). The canonical face wraps past 90° at its outline (towards the ears)
/// and turns down under the nose and the upper lip; there the normal test calls a vertex hidden
/// that nothing covers, and on those the two tests differ even frontally (1.5 % of all vertices
/// of the default model), by construction rather than by error.
#[test]
fn the_normal_test_and_the_zbuffer_agree_frontally_and_part_at_high_yaw() {
    let mut p = prepare(&scene(&synthetic("FlorenceLike", 1, "Normals", "Default", 224), "vis.ron")).unwrap();
    iterate(&mut p, 1, false).unwrap();
    let (n, triangles) = (p.model.n_vertices(), p.model.triangles().to_vec());
    let mean_normals = faceforge_kernels::normals::forward_cpu(p.model.mean_shape(), &triangles, &Adjacency::new(n, &triangles), n);
    let front: Vec<usize> = (0..n).filter(|&v| mean_normals[3 * v + 2] > 0.3).collect();
    let mut q = p.world.query::<(&Frame, &GroundTruth, &Mesh, &Pose, &Visibility)>();
    let mut rows = Vec::new();
    for (_, truth, mesh, pose, by_normals) in q.iter(&p.world) {
        let (model, camera) = pose.camera();
        let projected = project::forward_cpu(model, &mesh.positions, &camera, n);
        let raster = rasterize::forward_cpu(RasterShape { batch: 1, width: 224, height: 224 }, &projected, &triangles, n);
        let by_z = visibility::by_zbuffer_cpu(&raster, &projected, n, 1.0, &Adjacency::new(n, &triangles));
        let differ = front.iter().filter(|&&v| by_z[v] != by_normals.visible[v]).count() as f64 / front.len() as f64;
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
        println!("yaw {yaw:>5.0}°: normal test and z-buffer differ on {:.2} % of the {} front vertices", 100.0 * differ, front.len());
    }
    let frontal = rows.iter().find(|(y, _)| y.abs() < 1.0).unwrap().1;
    let side = rows.iter().filter(|(y, _)| y.abs() >= 70.0).map(|r| r.1).fold(f64::INFINITY, f64::min);
    assert!(frontal <= 0.01, "frontal disagreement {:.2} %", 100.0 * frontal);
    assert!(side > frontal + 0.01, "at |yaw| ≥ 70° the disagreement ({:.2} %) must exceed the frontal one", 100.0 * side);
}

/// PGN's swap at the ground truth: frame i's texture on the vertices both frames see, frame j's
/// own elsewhere, drawn at frame j's pose, reproduces frame j's face when the lighting is equal
/// (the mvf-like preset lights all views of a subject alike; here two views 20° apart).
///
/// Compared on M2 where the triangle's corners sample their own surface in both frames
/// (`footprint_on_own_triangles`): at a silhouette or the mesh's border a bilinear sample mixes
/// in what lies beyond, in PGN as here. What remains is the vertex-colour sampling error of the
/// test above (mean 0.4/255 at this size, up to ~13/255 at the few high-contrast vertices of the
/// eyes and lips), spread over each vertex's triangles: most of the face is within 2/255.
#[test]
fn the_swapped_texture_drawn_at_the_target_pose_reproduces_the_target() {
    let text = synthetic("MvfLike", 1, "ZBuffer", "Tiny", 896)
        .replace("landmark_noise: 0.0)", "landmark_noise: 0.0, frames: 2, yaws: [0.0, 20.0])")
        .replace(r#"(name: "render", keep: true),"#, r#"(name: "render", keep: true), (name: "swap_visible_texture"), (name: "render_swapped", keep: true),"#);
    let mut p = prepare(&scene(&text, "swap.ron")).unwrap();
    iterate(&mut p, 1, false).unwrap();
    let (n, triangles) = (p.model.n_vertices(), p.model.triangles().to_vec());
    let adjacency = Adjacency::new(n, &triangles);
    let mut clean = std::collections::BTreeMap::new();
    let mut q = p.world.query::<(Entity, &Rendered, &Visibility)>();
    for (e, rendered, visible) in q.iter(&p.world) {
        let inside = footprint_on_own_triangles(rendered, &adjacency, 896);
        clean.insert(e, (0..n).map(|v| inside[v] && visible.visible[v] > 0.0).collect::<Vec<bool>>());
    }
    let mut q = p.world.query::<(Entity, &Frame, &Image, &RenderedSwaps, &Rendered)>();
    let mut checked = 0;
    for (e, frame, image, swaps, rendered) in q.iter(&p.world) {
        assert_eq!(swaps.images.len(), 1, "{}: one swap from the other view", frame.name);
        for (source, drawn) in &swaps.images {
            let (mut pixels, mut within, mut sum) = (0usize, 0usize, 0.0f64);
            for px in 0..swaps.mask.len() {
                let t = rendered.tri[px];
                if swaps.mask[px] == 0.0 || t == 0 {
                    continue;
                }
                let corners = [0, 1, 2].map(|k| triangles[3 * (t as usize - 1) + k] as usize);
                if !corners.iter().all(|&v| clean[&e][v] && clean[source][v]) {
                    continue;
                }
                let err = (0..3).map(|c| (drawn[3 * px + c].clamp(0.0, 1.0) - image.rgb[3 * px + c]).abs()).fold(0.0f32, f32::max);
                pixels += 1;
                within += (err <= 2.0 / 255.0) as usize;
                sum += err as f64;
            }
            let (fraction, mean) = (within as f64 / pixels as f64, sum / pixels as f64);
            let source_name = &p.world.get::<Frame>(*source).unwrap().name;
            println!("{source_name} → {}: {pixels} pixels, {:.1} % within 2/255, mean {:.2}/255", frame.name, 100.0 * fraction, 255.0 * mean);
            assert!(pixels > 100_000 && fraction >= 0.8 && mean <= 1.5 / 255.0, "{source_name} → {}", frame.name);
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "both directions");
}

/// MGCNet's pinhole camera against PGN's weak perspective: a face seen frontally at distance d
/// with focal length f = s·d (so the image scale s stays 1 px/mm: the 165-mm-wide face spans
/// 165 px of a 224-px crop) projects like the weak-perspective camera of scale s once d is
/// large. To first order the gap at a vertex is s²·|z|·r/f (r its distance from the optical
/// axis, z its depth from the face's mean), so it shrinks as 1/d: 0.13 px on average (1.2 px at
/// the worst vertex, the outline at the ears, 40 mm behind the mean depth and 80 mm out) at
/// f = 5000 px, within 5 % of that prediction. (The analytic face before issue 20 was a shallow
/// height field: 0.09 px, 0.48 px at worst.)
#[test]
fn pinhole_converges_to_weak_perspective_with_distance() {
    use faceforge_kernels::project::{forward_cpu, pinhole_params, weak_params, CameraModel};
    let model = faceforge_model::MorphableModel::generate(&faceforge_model::ModelSpec::default());
    let n = model.n_vertices();
    // Centred on its mean depth, so the weak camera's reference plane is the face's.
    let z_mean = model.mean_shape().chunks(3).map(|p| p[2]).sum::<f32>() / n as f32;
    let face: Vec<f32> = model.mean_shape().chunks(3).flat_map(|p| [p[0], p[1], p[2] - z_mean]).collect();
    let s = 1.0f32;
    let weak = forward_cpu(CameraModel::WeakPerspective, &face, &weak_params([[s, 0.0, 0.0, 112.0], [0.0, -s, 0.0, 112.0]]), n);
    let gap = |f: f32| -> (f32, f32) {
        let d = f / s;
        // X_c = R X + t with y down and z forward: the camera looks along −z of the model.
        let pinhole = forward_cpu(CameraModel::Pinhole, &face, &pinhole_params([f, f, 112.0, 112.0], [1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0], [0.0, 0.0, d]), n);
        let errors: Vec<f32> = pinhole.chunks(4).zip(weak.chunks(4)).map(|(p, w)| ((p[0] - w[0]).powi(2) + (p[1] - w[1]).powi(2)).sqrt()).collect();
        (errors.iter().sum::<f32>() / n as f32, errors.iter().fold(0.0, |a, b| a.max(*b)))
    };
    let (mean_5000, max_5000) = gap(5000.0);
    let (mean_10000, _) = gap(10000.0);
    let (mean_1000, _) = gap(1000.0);
    eprintln!("pinhole vs weak perspective: mean {mean_1000:.3} px at f = 1000, {mean_5000:.3} px (max {max_5000:.3}) at f = 5000, {mean_10000:.3} px at f = 10000");
    // The first-order gap, s²·|z|·r/f, per vertex.
    let predicted: Vec<f32> = face.chunks(3).map(|p| s * s * p[2].abs() * p[0].hypot(p[1]) / 5000.0).collect();
    let (predicted_mean, predicted_max) = (predicted.iter().sum::<f32>() / n as f32, predicted.iter().fold(0.0f32, |a, b| a.max(*b)));
    eprintln!("first-order prediction at f = 5000: mean {predicted_mean:.3} px, max {predicted_max:.3}");
    assert!((mean_5000 / predicted_mean - 1.0).abs() < 0.05 && (max_5000 / predicted_max - 1.0).abs() < 0.05, "at f = 5000 px: mean {mean_5000}, max {max_5000}");
    // As 1/d: doubling the distance halves the gap (within 10 %).
    assert!((mean_5000 / mean_10000 - 2.0).abs() < 0.2 && mean_1000 > 4.0 * mean_5000);
}

/// A pinhole view of a model's mean face turned `yaw` degrees about its vertical axis, from
/// 700 mm (y down, z forward): the camera's 16 parameters, the raster, and the mean albedo drawn
/// unlit (so a surface point has one colour in every view).
fn pinhole_view(model: &faceforge_model::MorphableModel, k: [f32; 4], size: usize, yaw: f32) -> ([f32; 16], rasterize::Raster, Vec<f32>) {
    use faceforge_kernels::project::{forward_cpu, pinhole_params, CameraModel};
    let r = project::rotation_ypr(yaw.to_radians(), 0.0, 0.0);
    let flipped: [f32; 9] = std::array::from_fn(|i| if i / 3 == 0 { r[i] } else { -r[i] });
    let cam = pinhole_params(k, flipped, [0.0, 0.0, 700.0]);
    let n = model.n_vertices();
    let projected = forward_cpu(CameraModel::Pinhole, model.mean_shape(), &cam, n);
    let shape = RasterShape { batch: 1, width: size, height: size };
    let raster = rasterize::forward_cpu(shape, &projected, model.triangles(), n);
    let image = faceforge_kernels::interpolate::forward_cpu(shape, &projected, model.triangles(), n, &raster.tri, model.mean_albedo(), 3);
    (cam, raster, image)
}

/// MGCNet's covisible map against ray casting. The `default` face seen by a pinhole camera, the
/// source view turned 0°, 30°, 60°: a target pixel is truly covisible when the surface point it
/// shows is the first thing a ray from the source camera meets (Möller–Trumbore over the
/// triangles under that source pixel, f64) and lies inside the source image. The paper's map
/// (triangles touching a vertex seen in both views) agrees exactly at 0° and by IoU 0.962 at 30°,
/// 0.945 at 60°: it spills one triangle ring past the occlusion boundaries (most disagreeing
/// pixels are in the map only). (0.969 at 30° on the analytic face before issue 20: the canonical
/// face's nose stands 47 mm in front of the eye corners, not 24, and hides a longer stretch of
/// cheek at 30°, so there is more boundary to spill past; floor 0.965 → 0.955.) The per-pixel test (`by_depth`, exact ray tests against the
/// triangles binned under the source pixel) reaches 0.999 at 30° and 0.995 at 60°; the issue
/// asks for 0.98.
#[test]
fn covisible_map_matches_ray_casting() {
    use faceforge_kernels::covisible;
    use faceforge_kernels::project::{forward_cpu, CameraModel};
    let model = faceforge_model::MorphableModel::generate(&faceforge_model::ModelSpec::default());
    let (n, triangles) = (model.n_vertices(), model.triangles());
    let adjacency = Adjacency::new(n, triangles);
    let (w, h) = (160usize, 160usize);
    let view = |yaw: f32| {
        let (cam, raster, _) = pinhole_view(&model, [700.0, 700.0, 80.0, 80.0], w, yaw);
        let projected = forward_cpu(CameraModel::Pinhole, model.mean_shape(), &cam, n);
        let visible = visibility::by_zbuffer_cpu(&raster, &projected, n, 1.0, &adjacency);
        (cam, projected, raster, visible)
    };
    let to_camera = |cam: &[f32; 16], x: [f64; 3]| -> [f64; 3] { std::array::from_fn(|i| (0..3).map(|k| cam[4 + 3 * i + k] as f64 * x[k]).sum::<f64>() + cam[13 + i] as f64) };
    let (_, _, target_raster, visible_t) = view(0.0);
    for yaw in [0.0f32, 30.0, 60.0] {
        let (source_cam, source_projected, source_raster, visible_s) = view(yaw);
        let map = covisible::map(&visible_t, &visible_s, triangles, &target_raster.tri);
        let per_pixel = covisible::by_depth(model.mean_shape(), triangles, &target_raster, &source_raster, &source_cam, 1.0);
        // Each triangle in source camera space, and its pixel box there, for the ray casts.
        let corner = |v: u32| to_camera(&source_cam, std::array::from_fn(|k| model.mean_shape()[3 * v as usize + k] as f64));
        let tris: Vec<[[f64; 3]; 3]> = triangles.chunks(3).map(|t| [corner(t[0]), corner(t[1]), corner(t[2])]).collect();
        let boxes: Vec<[f32; 4]> = triangles.chunks(3).map(|t| {
            let p = |v: u32| [source_projected[4 * v as usize], source_projected[4 * v as usize + 1]];
            let (a, b, c) = (p(t[0]), p(t[1]), p(t[2]));
            [a[0].min(b[0]).min(c[0]), a[0].max(b[0]).max(c[0]), a[1].min(b[1]).min(c[1]), a[1].max(b[1]).max(c[1])]
        }).collect();
        let (mut both, mut either, mut only_map) = (0usize, 0usize, 0usize);
        let (mut both_px, mut either_px, mut only_px) = (0usize, 0usize, 0usize);
        for i in 0..w * h {
            let t = target_raster.tri[i];
            let truth = t != 0 && {
                let tri = &triangles[3 * (t as usize - 1)..3 * t as usize];
                let (b0, b1) = (target_raster.bary[2 * i] as f64, target_raster.bary[2 * i + 1] as f64);
                let weights = [b0, b1, 1.0 - b0 - b1];
                let point: [f64; 3] = std::array::from_fn(|k| (0..3).map(|j| weights[j] * model.mean_shape()[3 * tri[j] as usize + k] as f64).sum());
                let p = to_camera(&source_cam, point);
                let (u, v) = (700.0 * p[0] / p[2] + 80.0, 700.0 * p[1] / p[2] + 80.0);
                let inside = p[2] > 0.0 && u >= 0.0 && v >= 0.0 && u < w as f64 && v < h as f64;
                // The nearest hit along the ray from the source camera through the point.
                let length = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
                let d = [p[0] / length, p[1] / length, p[2] / length];
                let nearest = tris.iter().zip(&boxes).filter(|(_, b)| (u as f32) >= b[0] - 1.0 && (u as f32) <= b[1] + 1.0 && (v as f32) >= b[2] - 1.0 && (v as f32) <= b[3] + 1.0).filter_map(|([a, b, c], _)| {
                    let (e1, e2) = ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], [c[0] - a[0], c[1] - a[1], c[2] - a[2]]);
                    let pv = [d[1] * e2[2] - d[2] * e2[1], d[2] * e2[0] - d[0] * e2[2], d[0] * e2[1] - d[1] * e2[0]];
                    let det = e1[0] * pv[0] + e1[1] * pv[1] + e1[2] * pv[2];
                    if det.abs() < 1e-12 {
                        return None;
                    }
                    let tv = [-a[0], -a[1], -a[2]];
                    let uu = (tv[0] * pv[0] + tv[1] * pv[1] + tv[2] * pv[2]) / det;
                    let qv = [tv[1] * e1[2] - tv[2] * e1[1], tv[2] * e1[0] - tv[0] * e1[2], tv[0] * e1[1] - tv[1] * e1[0]];
                    let vv = (d[0] * qv[0] + d[1] * qv[1] + d[2] * qv[2]) / det;
                    let dist = (e2[0] * qv[0] + e2[1] * qv[1] + e2[2] * qv[2]) / det;
                    (uu >= -1e-9 && vv >= -1e-9 && uu + vv <= 1.0 + 1e-9 && dist > 0.0).then_some(dist)
                }).fold(f64::MAX, f64::min);
                inside && nearest >= length - 0.5
            };
            let mapped = map[i] > 0.0;
            both += (truth && mapped) as usize;
            either += (truth || mapped) as usize;
            only_map += (mapped && !truth) as usize;
            let by_pixel = per_pixel[i] > 0.0;
            both_px += (truth && by_pixel) as usize;
            either_px += (truth || by_pixel) as usize;
            only_px += (by_pixel && !truth) as usize;
        }
        let iou_px = both_px as f64 / either_px.max(1) as f64;
        eprintln!("yaw {yaw}°: per-pixel covisible IoU {iou_px:.4} ({only_px} only per pixel, {} only in the truth)", either_px - both_px - only_px);
        let floor_px = match yaw as i32 { 0 => 0.999, _ => 0.99 };
        assert!(iou_px >= floor_px, "yaw {yaw}°: per-pixel IoU {iou_px} (floor {floor_px})");
        let iou = both as f64 / either.max(1) as f64;
        eprintln!("yaw {yaw}°: covisible IoU {iou:.4} over {either} pixels ({only_map} only in the map, {} only in the truth)", either - both - only_map);
        let floor = match yaw as i32 { 0 => 0.999, 30 => 0.955, _ => 0.94 };
        assert!(iou >= floor, "yaw {yaw}°: IoU {iou} (floor {floor})");
    }
}

/// MGCNet's view synthesis with the true depth and pose: the target rendered from its own depth,
/// moved into the source camera and sampled from the source render (bilinear), reproduces the
/// target render on the covisible pixels — the model's albedo drawn unlit, so a surface point
/// has one colour in every view. Mean 2.1/255 on the canonical face (below 2.0 on the
/// analytic face before issue 20, whose albedo's features were wider and whose nose hid less at
/// 25°; the bound went from 2.0 to 2.5/255), 7 × better than without the relative pose.
#[test]
fn view_synthesis_with_true_depth_and_pose_reproduces_the_target() {
    use faceforge_kernels::sample::{self, SampleShape};
    use faceforge_kernels::{covisible, view_synthesis};
    let model = faceforge_model::MorphableModel::generate(&faceforge_model::ModelSpec::default());
    let triangles = model.triangles();
    let (w, h) = (160usize, 160usize);
    let k = [700.0f32, 700.0, 80.0, 80.0];
    let ((target_cam, target, target_image), (source_cam, source, source_image)) = (pinhole_view(&model, k, w, 0.0), pinhole_view(&model, k, w, 25.0));
    let r_t: [f32; 9] = target_cam[4..13].try_into().unwrap();
    let r_s: [f32; 9] = source_cam[4..13].try_into().unwrap();
    // Target camera → source camera: x_s = R_s R_tᵀ (x_t − t_t) + t_s.
    let m = |a: &[f32; 9], b: &[f32; 9]| -> [f32; 9] { std::array::from_fn(|i| (0..3).map(|j| a[3 * (i / 3) + j] * b[3 * j + i % 3]).sum()) };
    let r_t_transposed: [f32; 9] = std::array::from_fn(|i| r_t[3 * (i % 3) + i / 3]);
    let r_rel = m(&r_s, &r_t_transposed);
    let moved = [0usize, 1, 2].map(|i| -(0..3).map(|j| r_rel[3 * i + j] * [0.0f32, 0.0, 700.0][j]).sum::<f32>());
    let t_rel = [moved[0], moved[1], moved[2] + 700.0];
    let coords = view_synthesis::coordinates(&target.depth, w, k, k, &r_rel, t_rel);
    let synthesised = sample::forward_cpu(SampleShape { batch: 1, width: w, height: h, channels: 3, points: w * h }, &source_image, &coords);
    let covisible = covisible::by_depth(model.mean_shape(), triangles, &target, &source, &source_cam, 1.0);
    let (mut total, mut count) = (0.0f64, 0usize);
    for i in 0..w * h {
        if covisible[i] > 0.0 {
            total += (0..3).map(|c| (synthesised[3 * i + c] - target_image[3 * i + c]).abs() as f64).sum::<f64>() / 3.0;
            count += 1;
        }
    }
    let mean = total / count as f64;
    // The same with the views taken as one (no relative motion): clearly worse.
    let unmoved = view_synthesis::coordinates(&target.depth, w, k, k, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], [0.0; 3]);
    let wrong = sample::forward_cpu(SampleShape { batch: 1, width: w, height: h, channels: 3, points: w * h }, &source_image, &unmoved);
    let wrong_mean = (0..w * h).filter(|&i| covisible[i] > 0.0).map(|i| (0..3).map(|c| (wrong[3 * i + c] - target_image[3 * i + c]).abs() as f64).sum::<f64>() / 3.0).sum::<f64>() / count as f64;
    eprintln!("view synthesis at 25°: mean |Ĩ − I| {:.2}/255 over {count} covisible pixels ({:.2}/255 without the relative pose)", 255.0 * mean, 255.0 * wrong_mean);
    assert!(count > 5000 && mean < 2.5 / 255.0, "mean {}/255 over {count}", 255.0 * mean);
    assert!(wrong_mean > 3.0 * mean, "without the pose {}/255", 255.0 * wrong_mean);
}

/// The pixel-consistency gradient through view synthesis: L_pixel(R, t) = pixel loss of the source
/// image sampled at the coordinates the relative pose gives, on a fixed covisible map; its
/// gradient assembled from the three adjoints (pixel loss → sample → coordinates) against central
/// differences, at a pose 2° and 3 mm off the truth (where the loss has a slope).
#[test]
fn pixel_consistency_gradient_reaches_the_relative_pose() {
    use faceforge_kernels::sample::{self, SampleShape};
    use faceforge_kernels::{covisible, pixel_consistency, view_synthesis};
    let model = faceforge_model::MorphableModel::generate(&faceforge_model::ModelSpec { preset: faceforge_model::Preset::Tiny, ..Default::default() });
    let triangles = model.triangles();
    let (w, h) = (64usize, 64usize);
    let k = [280.0f32, 280.0, 32.0, 32.0];
    let ((_, target, target_image), (source_cam, source, source_image)) = (pinhole_view(&model, k, w, 0.0), pinhole_view(&model, k, w, 20.0));
    let map = covisible::by_depth(model.mean_shape(), triangles, &target, &source, &source_cam, 1.0);
    let shape = SampleShape { batch: 1, width: w, height: h, channels: 3, points: w * h };
    let loss = |r: &[f32; 9], t: [f32; 3]| {
        let coords = view_synthesis::coordinates(&target.depth, w, k, k, r, t);
        pixel_consistency::forward(&sample::forward_cpu(shape, &source_image, &coords), &target_image, &map)
    };
    // The truth (target camera → source camera) turned 2° more and moved 3 mm.
    let (s, c) = 22f32.to_radians().sin_cos();
    let r = [c, 0.0, -s, 0.0, 1.0, 0.0, s, 0.0, c];
    let t = [700.0 * s + 3.0, 0.0, 700.0 - 700.0 * c];
    let coords = view_synthesis::coordinates(&target.depth, w, k, k, &r, t);
    let synthesised = sample::forward_cpu(shape, &source_image, &coords);
    let (value, g_image) = pixel_consistency::backward(&synthesised, &target_image, &map);
    let g_coords = sample::backward_cpu(shape, &source_image, &coords, &g_image);
    let (_, g_r, g_t) = view_synthesis::coordinates_backward(&target.depth, w, k, k, &r, t, &g_coords);
    // Relative to 1 % of the largest component: bilinear sampling is linear only inside a
    // texel, so central differences of the tiny components are noise (the swap path's tests
    // in tests/backward.rs meet the same).
    let floor = |g: &[f32]| 0.01 * g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    // (The rotation step was 10⁻⁴ until issue 20: the canonical face's sharper albedo put more
    // texel kinks within it, 0.053; at 3·10⁻⁵, 0.018.)
    let worst_r = faceforge_kernels::testing::worst_against_central_differences(|x| loss(&x.try_into().unwrap(), t), &r, &g_r, 1, 3e-5, floor(&g_r));
    let worst_t = faceforge_kernels::testing::worst_against_central_differences(|x| loss(&r, [x[0], x[1], x[2]]), &t, &g_t, 1, 1e-2, floor(&g_t));
    eprintln!("pixel consistency {value:.4}; gradient vs central differences: R {worst_r:.4}, t {worst_t:.4}");
    assert!(value > 0.0 && worst_r < 5e-2 && worst_t < 5e-2);
}

/// MGCNet's render loss through `render_backward` and `reconstruct_backward`: with the true pose
/// and lighting, fitting the coefficients by the skin-weighted render loss alone brings the
/// render to the image and the albedo towards the truth.
#[test]
fn the_render_loss_fits_the_albedo_through_the_render_adjoint() {
    let loaded = scene(
        r#"Scene(
            data: Synthetic(preset: AflwLike, subjects: 2, frames: 1, size: 96, seed: 4, landmark_noise: 0.0, yaws: [20.0]),
            model: Procedural(preset: Tiny),
            backend: Cpu,
            systems: [(name: "oracle_pose"), (name: "oracle_lighting"), (name: "reconstruct", settings: (albedo: true)), (name: "vertex_normals"), (name: "render")],
            losses: {"render": 1.9},
            optimizer: Adam(lr: 0.05, halve_every: 0),
            iterations: 60,
            outputs: (dir: "unused"),
        )"#,
        "render_loss.ron",
    );
    let mut p = prepare(&loaded).unwrap();
    let albedo_error = |p: &mut faceforge::run::Prepared| -> f32 {
        let sigma = p.model.albedo_sigma().to_vec();
        let mut q = p.world.query::<(&faceforge_components::Coeffs, &GroundTruth)>();
        let errors: Vec<f32> = q.iter(&p.world).flat_map(|(c, t)| c.tex.iter().zip(&t.coeffs.tex).zip(&sigma).map(|((a, b), s)| (a - b).abs() / s).collect::<Vec<_>>()).collect();
        errors.iter().sum::<f32>() / errors.len() as f32
    };
    let before = albedo_error(&mut p);
    let history = iterate(&mut p, 60, false).unwrap();
    let (first, last) = (history.0[0]["render"], history.0[59]["render"]);
    let after = albedo_error(&mut p);
    eprintln!("render loss {first:.4} → {last:.4}; albedo error {before:.3} → {after:.3} σ");
    assert!(last < 0.5 * first, "render loss {first} → {last}");
    assert!(after < 0.7 * before, "albedo error {before} → {after} σ");
}
