//! The procedural model's promises: determinism, orthonormal bases with falling σ, a face shape
//! with the landmarks where anatomy puts them, and a native file that round-trips and refuses
//! damage with a clear error.

use faceforge_model::{face, MorphableModel, ModelErrorKind, ModelSpec, Preset};

fn tiny(seed: u64) -> MorphableModel {
    MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, seed, ..ModelSpec::default() })
}

fn vertex(m: &MorphableModel, v: u32) -> [f32; 3] {
    let s = m.mean_shape();
    let i = 3 * v as usize;
    [s[i], s[i + 1], s[i + 2]]
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_does_not() {
    let a = tiny(11);
    let b = tiny(11);
    let c = tiny(12);
    assert_eq!(a.bytes(), b.bytes());
    assert_ne!(a.bytes(), c.bytes());
}

/// max |BᵀB − I| over every pair of components, in f64.
fn orthonormality_error(basis: &[f32], n: usize, len: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for i in 0..n {
        for j in i..n {
            let (a, b) = (&basis[i * len..(i + 1) * len], &basis[j * len..(j + 1) * len]);
            let d: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let target = if i == j { 1.0 } else { 0.0 };
            worst = worst.max((d - target).abs());
        }
    }
    worst
}

#[test]
fn bases_are_orthonormal_with_falling_sigma() {
    let m = tiny(1);
    let len = 3 * m.n_vertices();
    assert!(m.n_id() >= 80 && m.n_exp() >= 29 && m.n_albedo() >= 80);
    for (name, basis, sigma) in [
        ("identity", m.id_basis(), m.id_sigma()),
        ("expression", m.exp_basis(), m.exp_sigma()),
        ("albedo", m.albedo_basis(), m.albedo_sigma()),
    ] {
        let err = orthonormality_error(basis, sigma.len(), len);
        assert!(err < 1e-4, "{name} basis: |BᵀB − I|∞ = {err}");
        assert!(sigma.windows(2).all(|w| w[1] < w[0]), "{name} σ must fall: {sigma:?}");
    }
}

#[test]
fn preset_sizes_are_near_their_targets() {
    for (preset, vertices) in [(Preset::Tiny, 1_000.0), (Preset::Default, 5_000.0), (Preset::Bfm, 35_000.0)] {
        let m = MorphableModel::generate(&ModelSpec { preset, n_id: 1, n_exp: 1, n_tex: 1, ..ModelSpec::default() });
        let (v, t) = (m.n_vertices() as f64, m.n_triangles() as f64);
        assert!((v / vertices - 1.0).abs() < 0.1, "{preset:?}: {v} vertices, target {vertices}");
        assert!(t > 1.85 * v && t < 2.0 * v, "{preset:?}: {t} triangles for {v} vertices");
    }
}

#[test]
fn front_faces_the_camera() {
    let m = tiny(2);
    let t = m.triangles();
    for tri in t.chunks(3) {
        let [a, b, c] = [vertex(&m, tri[0]), vertex(&m, tri[1]), vertex(&m, tri[2])];
        let (e1, e2) = ([b[0] - a[0], b[1] - a[1]], [c[0] - a[0], c[1] - a[1]]);
        let nz = e1[0] * e2[1] - e1[1] * e2[0];
        assert!(nz > 0.0, "triangle {tri:?} faces away from +z");
    }
}

#[test]
fn relief_has_a_face_not_a_sphere() {
    let m = tiny(3);
    let z = |v: u32| vertex(&m, v)[2];
    let lm = m.landmarks();
    // The nose tip stands out of the cheeks by more than 2 cm, the eyes sit in sockets below the
    // brows and the bridge, the lips stand out of the fold above the chin.
    assert!(z(lm[30]) - z(lm[2]) > 20.0);
    assert!(z(lm[27]) > z(lm[39]) + 5.0);
    assert!(z(lm[19]) > z(lm[37]));
    assert!(z(lm[57]) > z(lm[8]) - 10.0);
}

#[test]
fn landmarks_sit_where_anatomy_puts_them() {
    for seed in [0, 5] {
        let m = tiny(seed);
        let lm = m.landmarks();
        assert_eq!(lm.len(), 68);
        let p = |k: usize| vertex(&m, lm[k]);
        // The nose tip is the most forward landmark of the frontal mean face.
        let tip = p(30)[2];
        for k in 0..68 {
            if k != 30 {
                assert!(p(k)[2] < tip, "landmark {k} at z {} is in front of the nose tip {tip}", p(k)[2]);
            }
        }
        // Image left is the subject's right: jaw 0, right eye 36–41 and mouth corner 48 at x < 0.
        assert!(p(0)[0] < 0.0 && p(16)[0] > 0.0 && p(36)[0] < p(39)[0] && p(48)[0] < 0.0);
        // Top to bottom: brows, eyes, nose tip, mouth, chin.
        assert!(p(19)[1] > p(37)[1] && p(37)[1] > p(30)[1] && p(30)[1] > p(51)[1] && p(51)[1] > p(57)[1] && p(57)[1] > p(8)[1]);
        // The chin is the lowest point of the jaw, the jaw runs down then up.
        assert!((0..8).all(|k| p(k)[1] >= p(k + 1)[1]) && (8..16).all(|k| p(k)[1] <= p(k + 1)[1]) && p(0)[1] > p(8)[1] + 100.0);
        // All 68 are distinct vertices.
        let mut sorted = lm.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 68);
    }
}

#[test]
fn mirror_map_pairs_the_landmarks_and_the_mean_face_is_symmetric() {
    let m = tiny(4);
    let (lm, mirror) = (m.landmarks(), m.mirror());
    assert_eq!(mirror[lm[36] as usize], lm[45]);
    assert_eq!(mirror[lm[48] as usize], lm[54]);
    let pairs = [(0, 16), (17, 26), (21, 22), (31, 35), (39, 42), (41, 46), (49, 53), (59, 55), (60, 64), (67, 65)];
    for (a, b) in pairs {
        assert_eq!(mirror[lm[a] as usize], lm[b], "landmarks {a} and {b}");
    }
    for v in 0..m.n_vertices() as u32 {
        let w = mirror[v as usize];
        assert_eq!(mirror[w as usize], v, "the mirror map is an involution");
        let (p, q) = (vertex(&m, v), vertex(&m, w));
        assert!((p[0] + q[0]).abs() < 1e-5 && (p[1] - q[1]).abs() < 1e-5 && (p[2] - q[2]).abs() < 1e-5, "{p:?} vs {q:?}");
    }
}

#[test]
fn expression_components_move_only_the_expressive_face() {
    let m = tiny(6);
    let len = 3 * m.n_vertices();
    let s = m.mean_shape();
    // Forehead above the brows and the temples beside the eyes hold no expression.
    let still: Vec<bool> = (0..m.n_vertices()).map(|v| s[3 * v + 1] > 72.0 || (s[3 * v].abs() > 64.0 && s[3 * v + 1] > 20.0)).collect();
    for k in 0..29 {
        let c = &m.exp_basis()[k * len..(k + 1) * len];
        let energy: f32 = (0..m.n_vertices()).filter(|&v| still[v]).map(|v| c[3 * v..3 * v + 3].iter().map(|x| x * x).sum::<f32>()).sum();
        assert!(energy < 0.05, "expression component {k} puts {energy} of its energy on the forehead and temples");
    }
}

#[test]
fn albedo_has_fine_texture_and_regions_have_weights() {
    let m = MorphableModel::generate(&ModelSpec { preset: Preset::Default, seed: 9, n_id: 1, n_exp: 1, ..ModelSpec::default() });
    let a = m.mean_albedo();
    let luminance = |v: usize| 0.3 * a[3 * v] + 0.59 * a[3 * v + 1] + 0.11 * a[3 * v + 2];
    let mut diffs: Vec<f32> = m
        .triangles()
        .chunks(3)
        .filter(|t| m.regions()[t[0] as usize] == face::REGION_SKIN)
        .map(|t| (luminance(t[0] as usize) - luminance(t[1] as usize)).abs())
        .collect();
    diffs.sort_by(f32::total_cmp);
    let median = diffs[diffs.len() / 2];
    assert!(median > 1.0 / 255.0, "skin is too flat for census: median edge contrast {median}");
    let w = m.region_weights();
    let count = |r| m.regions().iter().filter(|&&x| x == r).count();
    assert!(count(face::REGION_EYE) > 20 && count(face::REGION_NOSE) > 20 && count(face::REGION_MOUTH) > 20);
    assert!(m.regions().iter().zip(&w).all(|(&r, &w)| if r == face::REGION_SKIN { w == 1.0 } else { w == 5.0 }));
    assert!(m.uv().iter().all(|&u| (0.0..=1.0).contains(&u)));
}

#[test]
fn native_file_round_trips_exactly_through_a_memory_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ffm");
    let m = tiny(7);
    m.save(&path).unwrap();
    let back = MorphableModel::open(&path).unwrap();
    assert_eq!(back.bytes(), m.bytes());
    assert_eq!(back.header(), m.header());
    assert_eq!(back.id_basis(), m.id_basis());
    assert_eq!(back.landmarks(), m.landmarks());
}

fn damaged(f: impl FnOnce(&mut Vec<u8>)) -> (String, ModelErrorKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ffm");
    let mut bytes = tiny(8).bytes().to_vec();
    f(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    let err = MorphableModel::open(&path).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad.ffm"), "the error names the file: {text}");
    (text, err.kind)
}

#[test]
fn a_corrupted_byte_gives_the_checksum_error() {
    let (text, kind) = damaged(|b| {
        let at = b.len() / 2;
        b[at] ^= 0x10;
    });
    assert!(matches!(kind, ModelErrorKind::ArrayChecksum { .. }), "{text}");
    assert!(text.contains("checksum"), "{text}");
    let (_, kind) = damaged(|b| b[20] ^= 1);
    assert!(matches!(kind, ModelErrorKind::HeaderChecksum));
}

#[test]
fn truncated_and_wrong_version_files_are_named_errors() {
    let (text, kind) = damaged(|b| b.truncate(b.len() - 100));
    assert!(matches!(kind, ModelErrorKind::Truncated { .. }), "{text}");
    let (_, kind) = damaged(|b| b.truncate(30));
    assert!(matches!(kind, ModelErrorKind::Truncated { .. }));
    let (text, kind) = damaged(|b| b[8] = 9);
    assert!(matches!(kind, ModelErrorKind::WrongVersion { found: 9 }), "{text}");
    let (_, kind) = damaged(|b| b[0] = b'X');
    assert!(matches!(kind, ModelErrorKind::NotAModel));
    let (_, kind) = damaged(|b| b.clear());
    assert!(matches!(kind, ModelErrorKind::Truncated { .. }));
}
