//! faceforge's detector and landmarker against MediaPipe 0.10.21's own graphs (the fixture
//! written by `detect/tools/make_fixtures.py`), on the committed portraits and on the portrait
//! turned by ±30° in plane: the box within 1 px, the score within 1e-3, and the 468 points
//! within 0.05 px on average and 0.2 px at most wherever both sides read the same pixels.
//! Images without a face give none.

use faceforge_detect::{DetectOptions, FaceDetector};
use image::RgbImage;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Reference {
    mediapipe: String,
    images: Vec<ReferenceImage>,
}

#[derive(Deserialize)]
struct ReferenceImage {
    name: String,
    file: String,
    turned_degrees: Option<f64>,
    width: u32,
    height: u32,
    pixels_fnv1a: String,
    detections: Vec<ReferenceDetection>,
    landmarks: Vec<Vec<[f32; 3]>>,
}

#[derive(Deserialize)]
struct ReferenceDetection {
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn reference() -> Reference {
    let path = root().join("detect/tests/data/mediapipe_reference.json");
    let reference: Reference = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(reference.mediapipe, "0.10.21");
    reference
}

fn fnv1a(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3));
    format!("{hash:016x}")
}

/// `make_fixtures.py`'s `turn`, operation for operation: turned by sign × 30° about the centre,
/// bilinear at pixel centres, black outside, rounded half up.
fn turn(image: &RgbImage, sign: f64) -> RgbImage {
    let (w, h) = (image.width() as f64, image.height() as f64);
    let (s, c) = (0.5 * sign, 0.75f64.sqrt());
    let (ow, oh) = ((w * c + h * s.abs()).ceil(), (w * s.abs() + h * c).ceil());
    RgbImage::from_fn(ow as u32, oh as u32, |ox, oy| {
        let x = ox as f64 + 0.5 - ow / 2.0;
        let y = oy as f64 + 0.5 - oh / 2.0;
        let sx = c * x + s * y + w / 2.0 - 0.5;
        let sy = -s * x + c * y + h / 2.0 - 0.5;
        let (x0, y0) = (sx.floor(), sy.floor());
        let (ax, ay) = (sx - x0, sy - y0);
        let at = |xx: f64, yy: f64, k: usize| -> f64 {
            if xx >= 0.0 && yy >= 0.0 && xx < w && yy < h { image.get_pixel(xx as u32, yy as u32)[k] as f64 } else { 0.0 }
        };
        image::Rgb(std::array::from_fn(|k| {
            let v = (1.0 - ax) * (1.0 - ay) * at(x0, y0, k) + ax * (1.0 - ay) * at(x0 + 1.0, y0, k) + (1.0 - ax) * ay * at(x0, y0 + 1.0, k) + ax * ay * at(x0 + 1.0, y0 + 1.0, k);
            (v + 0.5).floor().clamp(0.0, 255.0) as u8
        }))
    })
}

/// The picture a fixture entry was made from, as faceforge reads it.
fn picture(r: &ReferenceImage) -> RgbImage {
    let path = if r.file.ends_with(".jpg") { root().join("examples").join(&r.file) } else { root().join("detect/tests/data").join(&r.file) };
    let image = image::open(&path).unwrap().to_rgb8();
    match r.turned_degrees {
        Some(degrees) => turn(&image, degrees.signum()),
        None => image,
    }
}

fn distances(a: &[[f32; 3]], b: &[[f32; 3]]) -> Vec<f32> {
    a.iter().zip(b).map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1])).collect()
}

fn mean_max(d: &[f32]) -> (f32, f32) {
    (d.iter().sum::<f32>() / d.len() as f32, d.iter().copied().fold(0.0f32, f32::max))
}

#[test]
fn boxes_scores_and_468_points_match_mediapipes_graph() {
    let detector = FaceDetector::new().unwrap();
    for want in &reference().images {
        let image = picture(want);
        assert_eq!((image.width(), image.height()), (want.width, want.height), "{}", want.name);
        let same_pixels = fnv1a(image.as_raw()) == want.pixels_fnv1a;
        // The PNGs and the turned pictures must be read identically; only JPEG decoders differ.
        assert!(same_pixels || want.file.ends_with(".jpg"), "{}: not the pixels the fixture was made from", want.name);
        let detections = detector.detect(&image, 0.5).unwrap();
        assert_eq!(detections.len(), want.detections.len(), "{}: faces found", want.name);
        for (got, want_d) in detections.iter().zip(&want.detections) {
            let box_error = got.bbox.iter().zip(&want_d.bbox).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            println!("{}: score {:.5} (MediaPipe {:.5}), box off by {box_error:.4} px at most", want.name, got.score, want_d.score);
            assert!((got.score - want_d.score).abs() <= 1e-3, "{}: score {} against {}", want.name, got.score, want_d.score);
            assert!(box_error <= 1.0, "{}: box {:?} against {:?}", want.name, got.bbox, want_d.bbox);
        }
        let faces = detector.faces(&image, &DetectOptions::default()).unwrap();
        assert_eq!(faces.len(), 1, "{}", want.name);
        let (mean, max) = mean_max(&distances(&faces[0].points, &want.landmarks[0]));
        println!("{}: 468 points off by {mean:.4} px on average, {max:.4} px at most (same pixels: {same_pixels})", want.name);
        if same_pixels {
            assert!(mean <= 0.05 && max <= 0.2, "{}: points off by {mean} px on average, {max} at most", want.name);
        } else {
            // Rust's JPEG decoder differs from libjpeg in under 1 % of the values by at most 3
            // levels. MediaPipe's own graph on the two decodings differs by 0.057 px on average
            // (0.20 at most) on obama.jpg and 0.153 (0.478) on biden.jpg: this is that term.
            assert!(mean <= 0.2 && max <= 0.6, "{}: points off by {mean} px on average, {max} at most", want.name);
        }
    }
}

#[test]
fn a_portrait_turned_by_30_degrees_is_found_with_its_crop_turned_and_its_points_turned() {
    let reference = reference();
    let upright = reference.images.iter().find(|r| r.name == "obama_half.png").unwrap();
    let detector = FaceDetector::new().unwrap();
    for want in reference.images.iter().filter(|r| r.turned_degrees.is_some()) {
        let degrees = want.turned_degrees.unwrap() as f32;
        let image = picture(want);
        let faces = detector.faces(&image, &DetectOptions::default()).unwrap();
        assert_eq!(faces.len(), 1, "turned by {degrees}°: no face found");
        let turn_error = faces[0].roi.rotation.to_degrees() - (upright_roll(&detector, upright) + degrees);
        // The upright points, turned as the picture was.
        let (s, c) = (0.5 * degrees.signum(), 0.75f32.sqrt());
        let (w, h) = (upright.width as f32, upright.height as f32);
        let turned: Vec<[f32; 3]> = upright.landmarks[0]
            .iter()
            .map(|p| {
                let (x, y) = (p[0] - w / 2.0, p[1] - h / 2.0);
                [c * x - s * y + want.width as f32 / 2.0, s * x + c * y + want.height as f32 / 2.0, p[2]]
            })
            .collect();
        let (ours, _) = mean_max(&distances(&faces[0].points, &turned));
        let (mediapipes, _) = mean_max(&distances(&want.landmarks[0], &turned));
        // The 68 iBUG points the fit uses; the interior ones (17–67) carry its weight.
        let ibug = |points: &[[f32; 3]]| -> Vec<[f32; 3]> { faceforge_detect::ibug::from_facemesh(points).into_iter().map(|p| [p[0], p[1], 0.0]).collect() };
        let ibug_error = distances(&ibug(&faces[0].points), &ibug(&turned));
        let (interior, _) = mean_max(&ibug_error[17..]);
        let (jaw, _) = mean_max(&ibug_error[..17]);
        println!(
            "turned by {degrees}°: the crop turned by {turn_error:.2}° more than the face; the 468 points {ours:.3} px from the upright ones turned (MediaPipe's own graph: {mediapipes:.3} px); iBUG interior {interior:.3} px, jaw {jaw:.3} px"
        );
        // The crop's angle comes from the detector's eye keypoints (±2 px on eyes 75 px apart
        // here, so ±1.5°), not from the landmarks.
        assert!(turn_error.abs() <= 3.0, "turned by {degrees}°: the crop's rotation is off by {turn_error}°");
        // Neither MediaPipe nor faceforge is exactly equivariant: the landmarker sees a
        // resampled picture, and its face outline moves most. MediaPipe's own graph puts the 468
        // points 2.02 px (−30°) and 1.80 px (+30°) on average from the upright ones turned, so
        // faceforge must do as well as it does; the interior iBUG points the fit leans on stay
        // within 2 px (2.7 % of the 75-px interocular distance at this size).
        assert!(ours <= mediapipes + 0.05, "turned by {degrees}°: {ours} px, MediaPipe {mediapipes} px");
        assert!(interior <= 2.0, "turned by {degrees}°: interior iBUG points {interior} px from the upright ones turned");
    }
}

/// The roll of the upright portrait's crop (its eyes are not exactly level), in degrees.
fn upright_roll(detector: &FaceDetector, upright: &ReferenceImage) -> f32 {
    let faces = detector.faces(&picture(upright), &DetectOptions::default()).unwrap();
    faces[0].roi.rotation.to_degrees()
}

#[test]
fn images_without_a_face_give_no_face() {
    let detector = FaceDetector::new().unwrap();
    let grey = RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128]));
    // A texture: value noise from a hash, 8-px cells.
    let texture = RgbImage::from_fn(640, 480, |x, y| {
        let h = ((x / 8) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((y / 8) as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let v = (h >> 56) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    });
    for (name, image) in [("grey", grey), ("texture", texture)] {
        let faces = detector.faces(&image, &DetectOptions { max_faces: 10, ..Default::default() }).unwrap();
        assert!(faces.is_empty(), "{name}: {} faces found", faces.len());
    }
}
