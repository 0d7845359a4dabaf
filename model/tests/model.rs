//! The procedural model's promises: determinism, orthonormal bases with falling σ, a face shape
//! with the landmarks where anatomy puts them, and a native file that round-trips and refuses
//! damage with a clear error.

use faceforge_model::{canonical, face, MorphableModel, ModelErrorKind, ModelSpec, Preset};

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

/// Each preset's vertex and triangle counts: 468 canonical vertices and 898 triangles, each
/// level adding a vertex per edge and turning each triangle into four.
#[test]
fn presets_are_subdivision_levels_of_the_canonical_mesh() {
    let canonical = canonical::mesh();
    let scale = canonical::scale_mm(&canonical.positions);
    for (preset, vertices, triangles) in [(Preset::Tiny, 1_833, 3_592), (Preset::Default, 7_257, 14_368), (Preset::Bfm, 28_881, 57_472)] {
        let m = MorphableModel::generate(&ModelSpec { preset, n_id: 1, n_exp: 1, n_tex: 1, ..ModelSpec::default() });
        assert_eq!((m.n_vertices(), m.n_triangles()), (vertices, triangles), "{preset:?}");
        // The 468 canonical vertices keep their indices and places (scaled to millimetres).
        for (v, c) in canonical.positions.iter().enumerate() {
            let p = vertex(&m, v as u32);
            for k in 0..3 {
                assert!((p[k] as f64 - c[k] * scale).abs() < 1e-5 * (c[k] * scale).abs().max(1.0), "{preset:?}: vertex {v} at {p:?}, canonical {c:?} × {scale}");
            }
        }
        assert_eq!(m.dense_landmarks(), (0..468).collect::<Vec<u32>>().as_slice());
        // The outer eye corners are the chosen 95 mm apart.
        let (a, b) = (vertex(&m, 33), vertex(&m, 263));
        let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
        assert!((d - 95.0).abs() < 1e-3, "outer eye corners {d} mm apart");
    }
}

/// Every edge lies on two triangles except the face's outline, as in the canonical mesh (which
/// closes the eyes and the mouth); no triangle is degenerate.
#[test]
fn subdivision_is_watertight_where_the_canonical_mesh_is() {
    for (preset, levels) in [(Preset::Tiny, 1), (Preset::Default, 2)] {
        let m = MorphableModel::generate(&ModelSpec { preset, n_id: 1, n_exp: 1, n_tex: 1, ..ModelSpec::default() });
        let mut edges: std::collections::HashMap<(u32, u32), usize> = Default::default();
        for t in m.triangles().chunks(3) {
            for k in 0..3 {
                let (a, b) = (t[k], t[(k + 1) % 3]);
                *edges.entry((a.min(b), a.max(b))).or_default() += 1;
            }
            let [a, b, c] = [vertex(&m, t[0]), vertex(&m, t[1]), vertex(&m, t[2])];
            let (e1, e2) = ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], [c[0] - a[0], c[1] - a[1], c[2] - a[2]]);
            let n = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
            let area = 0.5 * (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
            assert!(area > 0.01, "{preset:?}: triangle {t:?} has area {area} mm²");
        }
        assert!(edges.values().all(|&c| c <= 2), "{preset:?}: an edge on three triangles");
        // The outline: the canonical mesh's 36 outline edges, each split in two per level, and
        // every outline vertex with two outline neighbours (no loose ends).
        let boundary: Vec<(u32, u32)> = edges.iter().filter(|(_, c)| **c == 1).map(|(e, _)| *e).collect();
        assert_eq!(boundary.len(), 36 << levels, "{preset:?}");
        let mut degree: std::collections::HashMap<u32, usize> = Default::default();
        for (a, b) in &boundary {
            *degree.entry(*a).or_default() += 1;
            *degree.entry(*b).or_default() += 1;
        }
        assert!(degree.values().all(|&d| d == 2), "{preset:?}: the outline has loose ends");
    }
}

/// On the front (between the outer eye corners, chin to brows) every triangle faces the camera,
/// except in the creases of the nose and lips: the canonical mesh itself turns away under the
/// nose and under the upper lip at the mouth corners (10 of its 898 triangles face down), and the
/// butterfly's smoothing rounds the alar crease and the lips' edge over too (96 small triangles
/// at tiny and default together, all in or beside the nose and mouth regions). Triangle t of level L comes from
/// canonical triangle t / 4^L; those from a canonical triangle touching a nose or mouth vertex, or
/// a turned triangle, are left out.
#[test]
fn the_front_faces_the_camera() {
    let canonical = canonical::mesh();
    let canonical_faces_camera: Vec<bool> = canonical
        .triangles
        .iter()
        .map(|t| {
            let [a, b, c] = t.map(|v| canonical.positions[v as usize]);
            (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) > 0.0
        })
        .collect();
    assert_eq!(canonical_faces_camera.iter().filter(|&&f| !f).count(), 10);
    // Those triangles and their neighbours (which subdivision bends towards them).
    let turned: std::collections::HashSet<u32> =
        canonical.triangles.iter().zip(&canonical_faces_camera).filter(|(_, f)| !**f).flat_map(|(t, _)| *t).collect();
    let regions = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, n_id: 1, n_exp: 1, n_tex: 1, ..ModelSpec::default() }).regions()[..468].to_vec();
    let crease = |v: &u32| turned.contains(v) || [face::REGION_NOSE, face::REGION_MOUTH].contains(&regions[*v as usize]);
    let front_parent: Vec<bool> = canonical.triangles.iter().map(|t| !t.iter().any(crease)).collect();
    for (preset, levels) in [(Preset::Tiny, 1), (Preset::Default, 2)] {
        let m = MorphableModel::generate(&ModelSpec { preset, n_id: 1, n_exp: 1, n_tex: 1, ..ModelSpec::default() });
        let (corner, top) = (vertex(&m, 263)[0], vertex(&m, 105)[1]);
        let mut checked = 0;
        for (t, tri) in m.triangles().chunks(3).enumerate() {
            let [a, b, c] = [vertex(&m, tri[0]), vertex(&m, tri[1]), vertex(&m, tri[2])];
            let centre = [(a[0] + b[0] + c[0]) / 3.0, (a[1] + b[1] + c[1]) / 3.0];
            if centre[0].abs() > corner || centre[1] > top || !front_parent[t >> (2 * levels)] {
                continue;
            }
            let (e1, e2) = ([b[0] - a[0], b[1] - a[1]], [c[0] - a[0], c[1] - a[1]]);
            let nz = e1[0] * e2[1] - e1[1] * e2[0];
            assert!(nz > 0.0, "{preset:?}: triangle {tri:?} at {centre:?} faces away from +z");
            checked += 1;
        }
        assert!(checked > m.n_triangles() / 3, "{preset:?}: only {checked} triangles on the front");
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
    for preset in [Preset::Tiny, Preset::Default, Preset::Bfm] {
        let m = MorphableModel::generate(&ModelSpec { preset, seed: 4, n_id: 1, n_exp: 1, n_tex: 1 });
        let (lm, mirror) = (m.landmarks(), m.mirror());
        assert_eq!(mirror[lm[36] as usize], lm[45]);
        assert_eq!(mirror[lm[48] as usize], lm[54]);
        // (Jaw 3 and 13 are not a pair in the 468 → 68 table: 3 is the midpoint of 132 and 58,
        // 13 is 361 alone.)
        let pairs = [(0, 16), (4, 12), (17, 26), (21, 22), (31, 35), (39, 42), (41, 46), (49, 53), (59, 55), (60, 64), (67, 65)];
        for (a, b) in pairs {
            assert_eq!(mirror[lm[a] as usize], lm[b], "{preset:?}: landmarks {a} and {b}");
        }
        let mut worst = 0.0f32;
        for v in 0..m.n_vertices() as u32 {
            let w = mirror[v as usize];
            assert_eq!(mirror[w as usize], v, "the mirror map is an involution");
            let (p, q) = (vertex(&m, v), vertex(&m, w));
            worst = worst.max(((p[0] + q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2)).sqrt());
        }
        assert!(worst < 0.5, "{preset:?}: a vertex lies {worst} mm from its mirror's reflection");
    }
}

#[test]
fn expression_components_move_only_the_expressive_face() {
    let m = tiny(6);
    let len = 3 * m.n_vertices();
    let s = m.mean_shape();
    // Forehead 15 mm above the brows' top and the temples 15 mm beyond the outer eye corners,
    // above them, hold no expression.
    let lm = |k: usize| vertex(&m, m.landmarks()[k]);
    let (brow_top, corner) = (lm(19)[1].max(lm(24)[1]), lm(45));
    let still: Vec<bool> =
        (0..m.n_vertices()).map(|v| s[3 * v + 1] > brow_top + 15.0 || (s[3 * v].abs() > corner[0] + 15.0 && s[3 * v + 1] > corner[1])).collect();
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
