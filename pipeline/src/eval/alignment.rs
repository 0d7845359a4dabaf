//! Rigid alignment of point clouds for evaluation: Horn's closed form when correspondences are
//! known (same topology), point-to-plane ICP when they are not (a scan, another method's mesh),
//! the nearest-neighbour search ICP needs, and the "95 mm around the nose tip" crop of the
//! benchmarks (MGCNet, FRGC).


/// x ↦ R x + t, in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rigid {
    pub r: [[f64; 3]; 3],
    pub t: [f64; 3],
}

impl Default for Rigid {
    fn default() -> Self {
        Self { r: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], t: [0.0; 3] }
    }
}

impl Rigid {
    pub fn apply(&self, p: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|i| self.r[i][0] * p[0] + self.r[i][1] * p[1] + self.r[i][2] * p[2] + self.t[i])
    }

    /// Every point (xyz per point) moved.
    pub fn apply_all(&self, points: &[f32]) -> Vec<f32> {
        points.chunks(3).flat_map(|p| self.apply(point(p)).map(|v| v as f32)).collect()
    }

    /// `self` after `first`: x ↦ self(first(x)).
    pub fn after(&self, first: &Rigid) -> Rigid {
        let r = std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| self.r[i][k] * first.r[k][j]).sum()));
        Rigid { r, t: self.apply(first.t) }
    }

    pub fn inverse(&self) -> Rigid {
        let r: [[f64; 3]; 3] = std::array::from_fn(|i| std::array::from_fn(|j| self.r[j][i]));
        let t = std::array::from_fn(|i| -(0..3).map(|k| r[i][k] * self.t[k]).sum::<f64>());
        Rigid { r, t }
    }

    /// The rotation's angle in degrees.
    pub fn angle_deg(&self) -> f64 {
        ((self.r[0][0] + self.r[1][1] + self.r[2][2] - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees()
    }
}

pub fn point(p: &[f32]) -> [f64; 3] {
    [p[0] as f64, p[1] as f64, p[2] as f64]
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// The rotation and translation that best map `from` onto `to` (corresponding points, least
/// squares, Horn's quaternion method).
pub fn horn(from: &[f32], to: &[f32]) -> Rigid {
    let n = (from.len() / 3) as f64;
    let centre = |p: &[f32]| -> [f64; 3] { std::array::from_fn(|c| p.chunks(3).map(|v| v[c] as f64).sum::<f64>() / n) };
    let (ca, cb) = (centre(from), centre(to));
    let mut m = [[0.0f64; 3]; 3];
    for (a, b) in from.chunks(3).zip(to.chunks(3)) {
        let (a, b) = (sub(point(a), ca), sub(point(b), cb));
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += a[i] * b[j];
            }
        }
    }
    let [[sxx, sxy, sxz], [syx, syy, syz], [szx, szy, szz]] = m;
    let k = [
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ];
    let [w, x, y, z] = largest_eigenvector(k);
    let r = [
        [w * w + x * x - y * y - z * z, 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), w * w - x * x + y * y - z * z, 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ];
    let moved = Rigid { r, t: [0.0; 3] }.apply(ca);
    Rigid { r, t: sub(cb, moved) }
}

/// The unit eigenvector of the largest eigenvalue of a symmetric 4 × 4 matrix (cyclic Jacobi).
fn largest_eigenvector(mut a: [[f64; 4]; 4]) -> [f64; 4] {
    let mut v: [[f64; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|j| if i == j { 1.0 } else { 0.0 }));
    for _ in 0..50 {
        for p in 0..4 {
            for q in p + 1..4 {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..4 {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..4 {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let best = (0..4).max_by(|&i, &j| a[i][i].total_cmp(&a[j][j])).expect("four eigenvalues");
    std::array::from_fn(|i| v[i][best])
}

/// Nearest-neighbour search over a fixed cloud: a uniform grid of cubic cells over the cloud's
/// bounding box (cell lists in one array), searched in growing shells until no nearer point can
/// exist.
pub struct NearestGrid<'a> {
    points: &'a [f32],
    cell: f64,
    /// The grid's first cell and its size in cells per axis.
    lo: [i64; 3],
    dims: [i64; 3],
    /// Points of cell c: `ids[starts[c]..starts[c + 1]]`.
    starts: Vec<u32>,
    ids: Vec<u32>,
}

impl<'a> NearestGrid<'a> {
    /// `cell` in the points' units; about the mean spacing of the points works best. The cell
    /// grows when the box would need more than a few cells per point.
    pub fn new(points: &'a [f32], cell: f64) -> Self {
        let n = points.len() / 3;
        let (mut lo_p, mut hi_p) = ([f64::MAX; 3], [f64::MIN; 3]);
        for p in points.chunks(3) {
            for c in 0..3 {
                lo_p[c] = lo_p[c].min(p[c] as f64);
                hi_p[c] = hi_p[c].max(p[c] as f64);
            }
        }
        let mut cell = if cell.is_finite() && cell > 0.0 { cell } else { 1.0 };
        let budget = (8 * n).max(1 << 16) as f64;
        let count = |cell: f64| (0..3).map(|c| ((hi_p[c] - lo_p[c]) / cell).floor().max(0.0) + 1.0).product::<f64>();
        while n > 0 && count(cell) > budget {
            cell *= 2.0;
        }
        let lo: [i64; 3] = std::array::from_fn(|c| if n > 0 { (lo_p[c] / cell).floor() as i64 } else { 0 });
        let dims: [i64; 3] = std::array::from_fn(|c| if n > 0 { (hi_p[c] / cell).floor() as i64 - lo[c] + 1 } else { 0 });
        let total = (dims[0] * dims[1] * dims[2]).max(0) as usize;
        let index_of = |p: &[f32]| -> usize {
            let k: [i64; 3] = std::array::from_fn(|c| ((p[c] as f64 / cell).floor() as i64 - lo[c]).clamp(0, dims[c] - 1));
            ((k[0] * dims[1] + k[1]) * dims[2] + k[2]) as usize
        };
        let mut starts = vec![0u32; total + 1];
        for p in points.chunks(3) {
            starts[index_of(p) + 1] += 1;
        }
        for c in 0..total {
            starts[c + 1] += starts[c];
        }
        let mut cursor = starts.clone();
        let mut ids = vec![0u32; n];
        for (i, p) in points.chunks(3).enumerate() {
            let c = index_of(p);
            ids[cursor[c] as usize] = i as u32;
            cursor[c] += 1;
        }
        Self { points, cell, lo, dims, starts, ids }
    }

    /// The index of the nearest point and its squared distance (`None` for an empty cloud).
    pub fn nearest(&self, q: [f64; 3]) -> Option<(usize, f64)> {
        if self.ids.is_empty() {
            return None;
        }
        let centre: [i64; 3] = std::array::from_fn(|c| (q[c] / self.cell).floor() as i64 - self.lo[c]);
        let mut best: Option<(usize, f64)> = None;
        // No shell beyond the far corner of the grid can hold a point.
        let last = (0..3).map(|c| centre[c].abs().max((self.dims[c] - 1 - centre[c]).abs())).max().unwrap_or(0);
        for shell in 0..=last {
            // Only the shell's cells inside the grid.
            let range = |c: usize| (centre[c] - shell).max(0)..=(centre[c] + shell).min(self.dims[c] - 1);
            for x in range(0) {
                for y in range(1) {
                    let on_face = (x - centre[0]).abs() == shell || (y - centre[1]).abs() == shell;
                    for z in range(2) {
                        if !on_face && (z - centre[2]).abs() != shell {
                            continue;
                        }
                        let c = ((x * self.dims[1] + y) * self.dims[2] + z) as usize;
                        for &i in &self.ids[self.starts[c] as usize..self.starts[c + 1] as usize] {
                            let d = sub(point(&self.points[3 * i as usize..]), q);
                            let d2 = dot(d, d);
                            if best.is_none_or(|(_, b)| d2 < b) {
                                best = Some((i as usize, d2));
                            }
                        }
                    }
                }
            }
            // Every point beyond this shell is at least `shell · cell` away.
            if let Some((_, d2)) = best {
                let reach = shell as f64 * self.cell;
                if d2 <= reach * reach {
                    break;
                }
            }
        }
        best
    }
}

/// Indices of the points within `radius` of `centre` (the benchmarks' crop around the nose tip).
pub fn crop(points: &[f32], centre: [f64; 3], radius: f64) -> Vec<usize> {
    points.chunks(3).enumerate().filter(|(_, p)| dot(sub(point(p), centre), sub(point(p), centre)) <= radius * radius).map(|(i, _)| i).collect()
}

/// How the ICP loop ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IcpResult {
    /// Maps the source onto the target.
    pub transform: Rigid,
    pub iterations: usize,
    /// Root mean square point-to-plane residual of the last correspondences.
    pub rms: f64,
}

/// Point-to-plane ICP: moves `source` (xyz per point) onto the surface through `target` with
/// unit `target_normals`, starting from `init`. Each step pairs every source point with its
/// nearest target point and solves the linearised problem
/// min Σ ((R p + t − q)·n)² over a small rotation ω and translation δ (6 × 6 normal equations),
/// then composes exp(ω) onto the transform.
pub fn icp_point_to_plane(source: &[f32], target: &[f32], target_normals: &[f32], init: Rigid, max_iterations: usize) -> IcpResult {
    let grid = NearestGrid::new(target, spacing(target));
    let mut transform = init;
    let mut rms = f64::INFINITY;
    if source.is_empty() || target.is_empty() {
        return IcpResult { transform, iterations: 0, rms };
    }
    // The nearest-point queries are most of the time: the source goes in a fixed number of
    // chunks on the compute pool, whose sums are added in chunk order, so the result does not
    // depend on the machine's thread count.
    let points = source.len() / 3;
    let chunk = points.div_ceil(ICP_CHUNKS).max(1);
    for iteration in 1..=max_iterations {
        let parts = faceforge_kernels::parallel::map(points.div_ceil(chunk), |c| {
            let mut part = NormalEquations::default();
            for p in source[3 * c * chunk..(3 * (c + 1) * chunk).min(source.len())].chunks(3) {
                let p = transform.apply(point(p));
                let (j, _) = grid.nearest(p).expect("a non-empty target has a nearest point");
                part.add(p, point(&target[3 * j..]), point(&target_normals[3 * j..]));
            }
            part
        });
        let mut sums = NormalEquations::default();
        for part in &parts {
            sums.merge(part);
        }
        let NormalEquations { ata, atb, sum_sq, count } = sums;
        rms = (sum_sq / count.max(1) as f64).sqrt();
        let Some(x) = solve6(ata, atb) else { return IcpResult { transform, iterations: iteration, rms } };
        let step = Rigid { r: rotation_from_vector([x[0], x[1], x[2]]), t: [x[3], x[4], x[5]] };
        transform = step.after(&transform);
        if x.iter().map(|v| v * v).sum::<f64>() < 1e-18 {
            return IcpResult { transform, iterations: iteration, rms };
        }
    }
    IcpResult { transform, iterations: max_iterations, rms }
}

/// Chunks of an ICP step's source points (fixed, for results independent of the thread count).
const ICP_CHUNKS: usize = 16;

/// One ICP step's linearised point-to-plane problem, summed over pairs.
#[derive(Default)]
struct NormalEquations {
    ata: [[f64; 6]; 6],
    atb: [f64; 6],
    sum_sq: f64,
    count: usize,
}

impl NormalEquations {
    /// The pair of source point `p` with target point `q` of normal `n`.
    fn add(&mut self, p: [f64; 3], q: [f64; 3], n: [f64; 3]) {
        let residual = dot(sub(p, q), n);
        let c = cross(p, n);
        let row = [c[0], c[1], c[2], n[0], n[1], n[2]];
        for a in 0..6 {
            for b in 0..6 {
                self.ata[a][b] += row[a] * row[b];
            }
            self.atb[a] -= row[a] * residual;
        }
        self.sum_sq += residual * residual;
        self.count += 1;
    }

    fn merge(&mut self, other: &NormalEquations) {
        for a in 0..6 {
            for b in 0..6 {
                self.ata[a][b] += other.ata[a][b];
            }
            self.atb[a] += other.atb[a];
        }
        self.sum_sq += other.sum_sq;
        self.count += other.count;
    }
}

/// The mean distance from each point to its nearest other point: the cloud's spacing.
fn spacing(points: &[f32]) -> f64 {
    let n = points.len() / 3;
    if n < 2 {
        return 1.0;
    }
    let (mut lo, mut hi) = ([f64::MAX; 3], [f64::MIN; 3]);
    for p in points.chunks(3) {
        for c in 0..3 {
            lo[c] = lo[c].min(p[c] as f64);
            hi[c] = hi[c].max(p[c] as f64);
        }
    }
    // A surface of n points over its bounding box's largest face.
    let mut sides = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    sides.sort_by(f64::total_cmp);
    (sides[1] * sides[2] / n as f64).sqrt().max(1e-6) * 2.0
}

/// Rodrigues: the rotation by |w| radians about w.
pub fn rotation_from_vector(w: [f64; 3]) -> [[f64; 3]; 3] {
    let angle = dot(w, w).sqrt();
    if angle < 1e-300 {
        return Rigid::default().r;
    }
    let k = w.map(|v| v / angle);
    let (s, c) = angle.sin_cos();
    let kx = [[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]];
    std::array::from_fn(|i| std::array::from_fn(|j| (if i == j { 1.0 } else { 0.0 }) + s * kx[i][j] + (1.0 - c) * (0..3).map(|m| kx[i][m] * kx[m][j]).sum::<f64>()))
}

/// Solves a 6 × 6 system by Gaussian elimination with partial pivoting (None when singular).
fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let pivot = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..6 {
            let f = a[row][col] / a[col][col];
            for k in col..6 {
                a[row][k] -= f * a[col][k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 6];
    for row in (0..6).rev() {
        x[row] = (b[row] - (row + 1..6).map(|k| a[row][k] * x[k]).sum::<f64>()) / a[row][row];
    }
    Some(x)
}

/// Point-to-plane distance from each of `points` to the surface through `surface` (unit
/// `normals`): |(p − q)·n_q| with q the nearest surface point. Also returns the point-to-point
/// distances |p − q|.
pub fn surface_distances(points: &[f32], surface: &[f32], normals: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let grid = NearestGrid::new(surface, spacing(surface));
    points
        .chunks(3)
        .filter_map(|p| {
            let p = point(p);
            let (j, d2) = grid.nearest(p)?;
            Some((dot(sub(p, point(&surface[3 * j..])), point(&normals[3 * j..])).abs(), d2.sqrt()))
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotated(points: &[f32], transform: &Rigid) -> Vec<f32> {
        transform.apply_all(points)
    }

    #[test]
    fn horn_undoes_a_rotation_and_translation() {
        let cloud: Vec<f32> = (0..60).map(|i| ((i * 37 % 23) as f32 - 11.0) * 3.0).collect();
        let known = Rigid { r: rotation_from_vector([0.3, -0.2, 0.5]), t: [5.0, -2.0, 7.0] };
        let moved = rotated(&cloud, &known);
        let found = horn(&cloud, &moved);
        let back = found.apply_all(&cloud);
        let worst = back.iter().zip(&moved).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{worst}");
    }

    #[test]
    fn nearest_grid_agrees_with_brute_force() {
        let cloud: Vec<f32> = (0..900).map(|i| ((i * 7919 % 1000) as f32) * 0.1 - 50.0).collect();
        let grid = NearestGrid::new(&cloud, 4.0);
        for q in [[0.0, 0.0, 0.0], [49.0, -50.0, 12.0], [300.0, 0.0, -200.0], [-3.3, 7.7, 1.1]] {
            let brute = cloud
                .chunks(3)
                .enumerate()
                .map(|(i, p)| (i, dot(sub(point(p), q), sub(point(p), q))))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let found = grid.nearest(q).unwrap();
            assert!((found.1 - brute.1).abs() < 1e-9, "{q:?}: {found:?} vs {brute:?}");
        }
    }

    #[test]
    fn point_to_plane_distance_of_points_on_a_plane_is_zero() {
        // The plane z = 0.3 x − 0.2 y + 4, sampled on a grid, and other points of it off the grid.
        let normal = {
            let n = [-0.3f64, 0.2, 1.0];
            let l = dot(n, n).sqrt();
            n.map(|v| v / l)
        };
        let height = |x: f64, y: f64| 0.3 * x - 0.2 * y + 4.0;
        let surface: Vec<f32> = (0..21).flat_map(|i| (0..21).flat_map(move |j| {
            let (x, y) = (i as f64 * 5.0 - 50.0, j as f64 * 5.0 - 50.0);
            [x as f32, y as f32, height(x, y) as f32]
        })).collect();
        let normals: Vec<f32> = (0..441).flat_map(|_| normal.map(|v| v as f32)).collect();
        let points: Vec<f32> = (0..50).flat_map(|k| {
            let (x, y) = ((k as f64 * 1.73) % 90.0 - 45.0, (k as f64 * 3.11) % 90.0 - 45.0);
            [x as f32, y as f32, height(x, y) as f32]
        }).collect();
        let (plane, nearest) = surface_distances(&points, &surface, &normals);
        assert!(plane.iter().all(|d| *d < 1e-4), "{:?}", plane.iter().fold(0.0f64, |a, b| a.max(*b)));
        // The points are between grid samples, so the point-to-point distance is not zero.
        assert!(nearest.iter().sum::<f64>() / nearest.len() as f64 > 0.5);
        // Lifted 2 mm along the normal, every point is 2 mm off the plane.
        let lifted: Vec<f32> = points.chunks(3).flat_map(|p| (0..3).map(move |c| p[c] + 2.0 * normal[c] as f32)).collect();
        let (plane, _) = surface_distances(&lifted, &surface, &normals);
        assert!(plane.iter().all(|d| (d - 2.0).abs() < 1e-3));
    }

    #[test]
    fn point_to_plane_distance_off_a_sphere_is_the_radial_offset() {
        // A sphere of radius 50 mm sampled by a Fibonacci lattice (about 1.1 mm apart), normals
        // radial. Points on it are off the nearest tangent plane by R(1 − cos θ) with θ at most
        // half a spacing: < 0.01 mm. Points lifted 2 mm along the radius are 2 mm off.
        let (radius, n) = (50.0f64, 25_000);
        let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
        let direction = |k: f64, count: f64| {
            let z = 1.0 - 2.0 * (k + 0.5) / count;
            let r = (1.0 - z * z).sqrt();
            [r * (golden * k).cos(), r * (golden * k).sin(), z]
        };
        let normals: Vec<f32> = (0..n).flat_map(|k| direction(k as f64, n as f64).map(|v| v as f32)).collect();
        let surface: Vec<f32> = normals.iter().map(|v| v * radius as f32).collect();
        let probes: Vec<[f64; 3]> = (0..300).map(|k| direction(k as f64 + 0.37, 300.0)).collect();
        let on: Vec<f32> = probes.iter().flat_map(|d| d.map(|v| (v * radius) as f32)).collect();
        let lifted: Vec<f32> = probes.iter().flat_map(|d| d.map(|v| (v * (radius + 2.0)) as f32)).collect();
        let (plane, _) = surface_distances(&on, &surface, &normals);
        assert!(plane.iter().all(|d| *d < 0.01), "{}", plane.iter().fold(0.0f64, |a, b| a.max(*b)));
        let (plane, _) = surface_distances(&lifted, &surface, &normals);
        assert!(plane.iter().all(|d| (d - 2.0).abs() < 0.01), "{:?}", plane.iter().map(|d| (d - 2.0).abs()).fold(0.0f64, f64::max));
    }

    #[test]
    fn crop_keeps_the_ball() {
        let points = [0.0, 0.0, 0.0, 94.0, 0.0, 0.0, 0.0, 96.0, 0.0, 50.0, 50.0, 50.0, 60.0, 60.0, 0.0];
        // 50√3 ≈ 86.6 is inside 95 mm; 60√2 ≈ 84.9 is inside; 96 is not.
        assert_eq!(crop(&points, [0.0; 3], 95.0), vec![0, 1, 3, 4]);
    }

    #[test]
    fn rigid_composition_and_inverse() {
        let a = Rigid { r: rotation_from_vector([0.1, 0.2, -0.3]), t: [1.0, 2.0, 3.0] };
        let b = Rigid { r: rotation_from_vector([-0.4, 0.0, 0.2]), t: [-2.0, 0.5, 0.0] };
        let p = [3.0, -1.0, 2.0];
        let direct = b.apply(a.apply(p));
        let composed = b.after(&a).apply(p);
        let back = a.inverse().apply(a.apply(p));
        for c in 0..3 {
            assert!((direct[c] - composed[c]).abs() < 1e-12 && (back[c] - p[c]).abs() < 1e-12);
        }
        assert!((Rigid { r: rotation_from_vector([0.0, 10f64.to_radians(), 0.0]), t: [0.0; 3] }.angle_deg() - 10.0).abs() < 1e-9);
    }
}
