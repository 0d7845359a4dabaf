//! reconstruct: coefficients → mesh (S = S̄ + B_id α + B_exp β) and albedo (T = T̄ + B_tex γ) for
//! every frame at once, as one batched decode per basis.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Albedo, Coeffs, Compute, Frame, LandmarksOnly, Mesh, Model};
use faceforge_kernels::decode::{self, model_shapes, DecodeShape, DeviceBases};
use faceforge_kernels::launch::{download, upload};
use faceforge_kernels::Backend;
use faceforge_model::MorphableModel;
use std::sync::Arc;
use serde::Deserialize;

const NAME: &str = "reconstruct";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconstructSettings {
    /// Also decode the albedo (the model's per-vertex colours).
    pub albedo: bool,
    pub vertices: Vertices,
}

impl Default for ReconstructSettings {
    fn default() -> Self {
        Self { albedo: true, vertices: Vertices::All }
    }
}

/// Which vertices each iteration decodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Vertices {
    #[default]
    All,
    /// Only the model's landmark vertices (the rest of the mesh stays where it was, the mean
    /// face at first), for a graph whose systems read nothing else — a landmark fit. The frame
    /// is marked `LandmarksOnly`, and the run decodes the whole mesh from the final coefficients
    /// when it finishes (`decode_full_meshes`).
    Landmarks,
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: NAME,
        stage: Stage::Reconstruct,
        reads: data![Coeffs],
        writes: data![Mesh, Albedo],
        reads_if_present: data![],
        adjoint: Some("reconstruct_backward"),
        summary: "coefficients → mesh and albedo, one batched decode per basis",
        build: |settings| {
            let settings: ReconstructSettings = parse_settings(settings)?;
            if settings.vertices == Vertices::Landmarks && settings.albedo {
                return Err(crate::SettingsError("vertices: Landmarks decodes no albedo; add albedo: false".into()));
            }
            let (mut device, mut landmark_bases) = (None, None);
            Ok((move |model: Res<Model>, compute: Res<Compute>, frames: Query<(Entity, &Frame, &Coeffs)>, meshes: Query<&mut Mesh>, commands: Commands| match settings.vertices {
                Vertices::All => reconstruct(&settings, &model, &compute.0, &mut device, &frames, commands),
                Vertices::Landmarks => reconstruct_landmarks(LandmarkBases::refresh(&mut landmark_bases, &model.0), &frames, meshes, commands),
            })
            .pipe(collect_errors)
            .in_set(Stage::Reconstruct))
        },
    }
}

/// Stacks one coefficient vector per frame into a batch × K matrix, checking each length.
fn stack<'a>(
    frames: impl Iterator<Item = (&'a Frame, &'a [f32])>,
    expected: usize,
    what: &str,
) -> Result<Vec<f32>, StageError> {
    let mut out = Vec::new();
    for (frame, c) in frames {
        if c.len() != expected {
            return Err(StageError {
                system: NAME,
                message: format!("frame {} has {} {what} coefficients, the model has {expected}", frame.name, c.len()),
            });
        }
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// The model's means and bases on the device, uploaded once and reused by every decode and its
/// adjoint. It holds the model it was made from, so a different model is noticed.
pub struct DeviceModel {
    model: Arc<MorphableModel>,
    bases: DeviceBases,
}

impl DeviceModel {
    /// The device copy of `model` for `backend` (None on the CPU), made or remade in `slot`.
    pub fn refresh<'a>(slot: &'a mut Option<DeviceModel>, backend: &Backend, model: &Arc<MorphableModel>) -> Option<&'a DeviceModel> {
        let Backend::Gpu { client, .. } = backend else { return None };
        if slot.as_ref().is_none_or(|d| !Arc::ptr_eq(&d.model, model)) {
            let bases = DeviceBases::upload(client, model.mean_shape(), model.id_basis(), model.exp_basis(), model.mean_albedo(), model.albedo_basis());
            *slot = Some(DeviceModel { model: model.clone(), bases });
        }
        slot.as_ref()
    }
}

/// The model's mean and bases at its landmark vertices only (the 68 and the dense 468, each
/// vertex once, in order), for decoding and differentiating a landmark fit without reading the
/// whole bases.
pub struct LandmarkBases {
    model: Arc<MorphableModel>,
    /// The distinct landmark vertices.
    pub vertices: Vec<usize>,
    /// Per coordinate of the mesh: 0 at the landmark vertices, the bits of an f32 but its sign
    /// elsewhere.
    elsewhere: Vec<u32>,
    mean: Vec<f32>,
    id: Vec<f32>,
    exp: Vec<f32>,
}

impl LandmarkBases {
    /// The rows of `model`, gathered once into `slot` (again when the model changes).
    pub fn refresh<'a>(slot: &'a mut Option<LandmarkBases>, model: &Arc<MorphableModel>) -> &'a LandmarkBases {
        if slot.as_ref().is_none_or(|b| !Arc::ptr_eq(&b.model, model)) {
            let mut vertices: Vec<usize> = model.landmarks().iter().chain(model.dense_landmarks()).map(|&v| v as usize).collect();
            vertices.sort_unstable();
            vertices.dedup();
            let mut elsewhere = vec![0x7fff_ffffu32; 3 * model.n_vertices()];
            vertices.iter().for_each(|&v| elsewhere[3 * v..3 * v + 3].fill(0));
            let mut bases = LandmarkBases { model: model.clone(), vertices, elsewhere, mean: Vec::new(), id: Vec::new(), exp: Vec::new() };
            (bases.mean, bases.id, bases.exp) = (bases.gather(model.mean_shape()), bases.gather(model.id_basis()), bases.gather(model.exp_basis()));
            *slot = Some(bases);
        }
        slot.as_ref().expect("just filled")
    }

    /// The landmark vertices' xyz of each row of whole-mesh values (rows of 3N → rows of 3V).
    pub fn gather(&self, rows: &[f32]) -> Vec<f32> {
        rows.chunks(3 * self.model.n_vertices()).flat_map(|row| self.vertices.iter().flat_map(move |&v| [row[3 * v], row[3 * v + 1], row[3 * v + 2]])).collect()
    }

    /// Whether rows of whole-mesh gradients are zero away from the landmark vertices: an OR of
    /// the values' bits without the sign, masked to the other vertices (branch-free, so it
    /// vectorises; a per-vertex test took 60 % of a `bfm` landmark fit's iteration).
    pub fn only_at_landmarks(&self, rows: &[f32]) -> bool {
        rows.chunks(self.elsewhere.len()).all(|row| row.iter().zip(&self.elsewhere).fold(0u32, |any, (g, mask)| any | (g.to_bits() & mask)) == 0)
    }

    fn shape(&self, batch: usize, components: usize, base_per_item: bool) -> DecodeShape {
        DecodeShape { batch, components, len: 3 * self.vertices.len(), base_per_item }
    }

    /// The landmark vertices' positions (B × 3V) of stacked coefficients, on the native twin
    /// (products this small cost less than a dispatch).
    pub fn decode(&self, batch: usize, id: &[f32], exp: &[f32]) -> Vec<f32> {
        let with_id = decode::forward_cpu(self.shape(batch, self.model.n_id(), false), &self.mean, &self.id, id);
        decode::forward_cpu(self.shape(batch, self.model.n_exp(), true), &with_id, &self.exp, exp)
    }

    /// The adjoint of `decode`: d positions (B × 3V) → (d identity, d expression), B × K each.
    pub fn adjoint(&self, batch: usize, grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
        (decode::backward_cpu(self.shape(batch, self.model.n_id(), false), &self.id, grad), decode::backward_cpu(self.shape(batch, self.model.n_exp(), false), &self.exp, grad))
    }
}

/// `Vertices::Landmarks`: the landmark vertices decoded into each frame's mesh (a mean-face mesh
/// made the first time), the frame marked `LandmarksOnly`.
fn reconstruct_landmarks(bases: &LandmarkBases, frames: &Query<(Entity, &Frame, &Coeffs)>, mut meshes: Query<&mut Mesh>, mut commands: Commands) -> Result<(), StageError> {
    let rows: Vec<_> = frames.iter().collect();
    if rows.is_empty() {
        return Ok(());
    }
    let m = &bases.model;
    let id = stack(rows.iter().map(|(_, f, c)| (*f, c.id.as_slice())), m.n_id(), "identity")?;
    let exp = stack(rows.iter().map(|(_, f, c)| (*f, c.exp.as_slice())), m.n_exp(), "expression")?;
    let decoded = bases.decode(rows.len(), &id, &exp);
    let write = |positions: &mut [f32], points: &[f32]| {
        for (&v, p) in bases.vertices.iter().zip(points.chunks(3)) {
            positions[3 * v..3 * v + 3].copy_from_slice(p);
        }
    };
    for ((entity, _, _), points) in rows.iter().zip(decoded.chunks(3 * bases.vertices.len())) {
        match meshes.get_mut(*entity) {
            Ok(mut mesh) if mesh.positions.len() == 3 * m.n_vertices() => write(&mut mesh.positions, points),
            _ => {
                let mut positions = m.mean_shape().to_vec();
                write(&mut positions, points);
                commands.entity(*entity).insert((Mesh { positions }, LandmarksOnly));
            }
        }
    }
    Ok(())
}

/// Decodes the whole mesh (and the albedo, when the frame has none) of every frame marked
/// `LandmarksOnly` from its coefficients (a landmark fit's final meshes, for the outputs and
/// metrics), and removes the mark.
pub fn decode_full_meshes(world: &mut World) -> Result<(), StageError> {
    let (model, backend) = (world.resource::<Model>().0.clone(), world.resource::<Compute>().0.clone());
    let mut q = world.query_filtered::<(Entity, &Frame, &Coeffs), With<LandmarksOnly>>();
    let rows: Vec<(Entity, Frame, Coeffs)> = q.iter(world).map(|(e, f, c)| (e, f.clone(), c.clone())).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(&Frame, &Coeffs)> = rows.iter().map(|(_, f, c)| (f, c)).collect();
    let (shapes, albedos) = decode_batch(&backend, &model, None, &pairs, true)?;
    let albedos = albedos.unwrap_or_default();
    for (k, ((entity, _, _), positions)) in rows.iter().zip(shapes.chunks(3 * model.n_vertices())).enumerate() {
        let mut frame = world.entity_mut(*entity);
        frame.insert(Mesh { positions: positions.to_vec() }).remove::<LandmarksOnly>();
        // The albedo too (what the coefficients give; the mean when the fit left them), so the
        // systems that run after the last iteration (`render` for the outputs) find it.
        if !frame.contains::<Albedo>() {
            frame.insert(Albedo { rgb: albedos[3 * model.n_vertices() * k..3 * model.n_vertices() * (k + 1)].to_vec() });
        }
    }
    Ok(())
}

/// Decodes stacked coefficients (B × K each): shapes B × 3N and, given albedo coefficients, the
/// albedo B × 3N. On a device with `device`, the bases stay there and only coefficients move.
pub fn decode_stacked(
    backend: &Backend,
    m: &MorphableModel,
    device: Option<&DeviceModel>,
    batch: usize,
    id: &[f32],
    exp: &[f32],
    tex: Option<&[f32]>,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let shapes = model_shapes(batch, 3 * m.n_vertices(), (m.n_id(), m.n_exp(), m.n_albedo()));
    match (backend, device) {
        (Backend::Gpu { client, .. }, Some(d)) => {
            let (shapes, albedo) = d.bases.forward(client, shapes, &upload(client, id), &upload(client, exp), tex.map(|t| upload(client, t)).as_ref());
            (download(client, shapes), albedo.map(|a| download(client, a)))
        }
        _ => {
            let [shape_id, shape_exp, shape_tex] = shapes;
            let with_id = decode::forward(backend, shape_id, m.mean_shape(), m.id_basis(), id);
            let shapes = decode::forward(backend, shape_exp, &with_id, m.exp_basis(), exp);
            let albedo = tex.map(|t| decode::forward(backend, shape_tex, m.mean_albedo(), m.albedo_basis(), t));
            (shapes, albedo)
        }
    }
}

/// Per-vertex albedos (B × 3N) of stacked albedo coefficients (B × K), on the native twin.
pub fn decode_albedo_cpu(m: &MorphableModel, batch: usize, tex: &[f32]) -> Vec<f32> {
    let shape = DecodeShape { batch, components: m.n_albedo(), len: 3 * m.n_vertices(), base_per_item: false };
    decode::forward_cpu(shape, m.mean_albedo(), m.albedo_basis(), tex)
}

/// The adjoint of `decode_stacked`: (d identity, d expression, d albedo coefficients), B × K each.
pub fn decode_adjoint(
    backend: &Backend,
    m: &MorphableModel,
    device: Option<&DeviceModel>,
    batch: usize,
    grad_shapes: &[f32],
    grad_albedo: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let len = 3 * m.n_vertices();
    let shape = |components| DecodeShape { batch, components, len, base_per_item: false };
    match (backend, device) {
        (Backend::Gpu { client, .. }, Some(d)) => {
            let shapes = model_shapes(batch, len, (m.n_id(), m.n_exp(), m.n_albedo()));
            let (id, exp, tex) = d.bases.backward(client, shapes, &upload(client, grad_shapes), grad_albedo.map(|g| upload(client, g)).as_ref());
            (download(client, id), download(client, exp), tex.map_or_else(|| vec![0.0; batch * m.n_albedo()], |t| download(client, t)))
        }
        _ => {
            let id = decode::backward(backend, shape(m.n_id()), m.id_basis(), grad_shapes);
            let exp = decode::backward(backend, shape(m.n_exp()), m.exp_basis(), grad_shapes);
            let tex = match grad_albedo {
                Some(ga) => decode::backward(backend, shape(m.n_albedo()), m.albedo_basis(), ga),
                None => vec![0.0; batch * m.n_albedo()],
            };
            (id, exp, tex)
        }
    }
}

/// Decodes a batch of frames' coefficients, checking each set's sizes: (shapes B × 3N, albedo
/// B × 3N when asked).
pub fn decode_batch(
    backend: &Backend,
    m: &MorphableModel,
    device: Option<&DeviceModel>,
    frames: &[(&Frame, &Coeffs)],
    with_albedo: bool,
) -> Result<(Vec<f32>, Option<Vec<f32>>), StageError> {
    let id = stack(frames.iter().map(|(f, c)| (*f, c.id.as_slice())), m.n_id(), "identity")?;
    let exp = stack(frames.iter().map(|(f, c)| (*f, c.exp.as_slice())), m.n_exp(), "expression")?;
    let tex = if with_albedo { Some(stack(frames.iter().map(|(f, c)| (*f, c.tex.as_slice())), m.n_albedo(), "albedo")?) } else { None };
    Ok(decode_stacked(backend, m, device, frames.len(), &id, &exp, tex.as_deref()))
}

fn reconstruct(
    settings: &ReconstructSettings,
    model: &Model,
    backend: &Backend,
    device: &mut Option<DeviceModel>,
    frames: &Query<(Entity, &Frame, &Coeffs)>,
    mut commands: Commands,
) -> Result<(), StageError> {
    let rows: Vec<_> = frames.iter().collect();
    if rows.is_empty() {
        return Ok(());
    }
    let len = 3 * model.0.n_vertices();
    let pairs: Vec<(&Frame, &Coeffs)> = rows.iter().map(|(_, f, c)| (*f, *c)).collect();
    let device = DeviceModel::refresh(device, backend, &model.0);
    let (shapes, albedo) = decode_batch(backend, &model.0, device, &pairs, settings.albedo)?;
    for ((entity, _, _), positions) in rows.iter().zip(shapes.chunks(len)) {
        commands.entity(*entity).insert(Mesh { positions: positions.to_vec() });
    }
    if let Some(colours) = albedo {
        for ((entity, _, _), rgb) in rows.iter().zip(colours.chunks(len)) {
            commands.entity(*entity).insert(Albedo { rgb: rgb.to_vec() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{registry, StageErrors};
    use faceforge_kernels::testing::{assert_close, random, wgpu_backend};
    use faceforge_model::{MorphableModel, ModelSpec, Preset, SplitMix64};
    use std::sync::Arc;

    /// Runs the registered reconstruct system on three frames and returns (coeffs, meshes).
    fn run(backend: Backend) -> (Arc<MorphableModel>, Vec<Coeffs>, Vec<Vec<f32>>) {
        let model = Arc::new(MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, n_id: 10, n_exp: 5, n_tex: 4, ..ModelSpec::default() }));
        let mut world = World::new();
        world.insert_resource(Model(model.clone()));
        world.insert_resource(Compute(backend));
        world.init_resource::<StageErrors>();
        let subject = world.spawn_empty().id();
        let mut rng = SplitMix64::new(1);
        let mut coeffs = Vec::new();
        for index in 0..3 {
            let c = Coeffs {
                id: rng.scaled_normals(model.id_sigma(), 1.0),
                exp: rng.scaled_normals(model.exp_sigma(), 1.0),
                tex: rng.scaled_normals(model.albedo_sigma(), 1.0),
            };
            let frame = Frame { subject, subject_id: 0, index, name: format!("f{index}") };
            world.spawn((frame, c.clone()));
            coeffs.push(c);
        }
        let entry = registry().into_iter().find(|e| e.name == "reconstruct").unwrap();
        let mut schedule = Schedule::default();
        schedule.add_systems((entry.build)(None).unwrap());
        schedule.run(&mut world);
        assert!(world.resource::<StageErrors>().0.is_empty());
        let mut q = world.query::<(&Frame, &Mesh)>();
        let mut meshes: Vec<_> = q.iter(&world).map(|(f, m)| (f.index, m.positions.clone())).collect();
        meshes.sort_by_key(|(i, _)| *i);
        (model, coeffs, meshes.into_iter().map(|(_, m)| m).collect())
    }

    /// S̄ + Σ α_k B_id,k + Σ β_k B_exp,k for one frame, in f64.
    fn expected(model: &MorphableModel, c: &Coeffs) -> Vec<f32> {
        let len = 3 * model.n_vertices();
        (0..len)
            .map(|i| {
                let mut s = model.mean_shape()[i] as f64;
                s += c.id.iter().enumerate().map(|(k, a)| *a as f64 * model.id_basis()[k * len + i] as f64).sum::<f64>();
                s += c.exp.iter().enumerate().map(|(k, b)| *b as f64 * model.exp_basis()[k * len + i] as f64).sum::<f64>();
                s as f32
            })
            .collect()
    }

    #[test]
    fn meshes_are_the_model_decoded_on_both_backends() {
        for backend in [Backend::Cpu, wgpu_backend()] {
            let (model, coeffs, meshes) = run(backend);
            assert_eq!(meshes.len(), 3);
            for (c, mesh) in coeffs.iter().zip(&meshes) {
                assert_close(mesh, &expected(&model, c), 1e-5);
                // The coefficients moved the face: sampled faces differ from the mean by millimetres.
                let moved = mesh.iter().zip(model.mean_shape()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(moved > 1.0, "max displacement {moved} mm");
            }
        }
    }

    #[test]
    fn landmark_rows_give_the_whole_decode_and_adjoint_at_the_landmarks() {
        let model = Arc::new(MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, n_id: 12, n_exp: 6, n_tex: 5, ..ModelSpec::default() }));
        let mut slot = None;
        let bases = LandmarkBases::refresh(&mut slot, &model);
        let (batch, len) = (3, 3 * model.n_vertices());
        let (id, exp) = (random(batch * 12, 1), random(batch * 6, 2));
        let (shapes, _) = decode_stacked(&Backend::Cpu, &model, None, batch, &id, &exp, None);
        assert_close(&bases.decode(batch, &id, &exp), &bases.gather(&shapes), 1e-5);
        // A gradient at the landmark vertices alone: the rows' adjoint is the whole one.
        let mut g = vec![0.0; batch * len];
        for (b, &v) in (0..batch).flat_map(|b| model.landmarks().iter().map(move |v| (b, v))) {
            g[b * len + 3 * v as usize..b * len + 3 * v as usize + 3].copy_from_slice(&random(3, b as u64 * 1000 + v as u64));
        }
        assert!(bases.only_at_landmarks(&g));
        let (whole_id, whole_exp, _) = decode_adjoint(&Backend::Cpu, &model, None, batch, &g, None);
        let (rows_id, rows_exp) = bases.adjoint(batch, &bases.gather(&g));
        assert_close(&rows_id, &whole_id, 1e-4);
        assert_close(&rows_exp, &whole_exp, 1e-4);
        // Anything elsewhere (one coordinate of one other vertex, of either sign) is noticed.
        let other = (0..model.n_vertices()).find(|v| !bases.vertices.contains(v)).unwrap();
        assert!(other >= 468, "the dense landmarks 0–467 are rows too");
        for value in [1e-30, -2.0] {
            let mut h = g.clone();
            h[len + 3 * other + 2] = value;
            assert!(!bases.only_at_landmarks(&h), "{value} at vertex {other} missed");
        }
    }

    #[test]
    fn landmark_rows_reconstruct_marks_the_frames_and_the_end_decodes_the_whole_meshes() {
        let model = Arc::new(MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, n_id: 10, n_exp: 5, n_tex: 4, ..ModelSpec::default() }));
        let mut world = World::new();
        world.insert_resource(Model(model.clone()));
        world.insert_resource(Compute(Backend::Cpu));
        world.init_resource::<StageErrors>();
        let subject = world.spawn_empty().id();
        let mut rng = SplitMix64::new(3);
        let c = Coeffs { id: rng.scaled_normals(model.id_sigma(), 1.0), exp: rng.scaled_normals(model.exp_sigma(), 1.0), tex: vec![0.0; 4] };
        let e = world.spawn((Frame { subject, subject_id: 0, index: 0, name: "f0".into() }, c.clone())).id();
        let entry = registry().into_iter().find(|e| e.name == "reconstruct").unwrap();
        assert!((entry.build)(Some("(vertices: Landmarks)")).is_err(), "landmark rows with the albedo on");
        let mut schedule = Schedule::default();
        schedule.add_systems((entry.build)(Some("(albedo: false, vertices: Landmarks)")).unwrap());
        schedule.run(&mut world);
        assert!(world.resource::<StageErrors>().0.is_empty());
        let whole = expected(&model, &c);
        let mesh = world.get::<Mesh>(e).unwrap().positions.clone();
        for &v in model.landmarks() {
            let v = v as usize;
            assert_close(&mesh[3 * v..3 * v + 3], &whole[3 * v..3 * v + 3], 1e-5);
        }
        assert!(world.get::<LandmarksOnly>(e).is_some());
        decode_full_meshes(&mut world).unwrap();
        assert_close(&world.get::<Mesh>(e).unwrap().positions, &whole, 1e-5);
        assert!(world.get::<LandmarksOnly>(e).is_none());
    }

    #[test]
    fn bases_kept_on_the_device_give_the_native_decode_and_adjoint() {
        let backend = wgpu_backend();
        let model = Arc::new(MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, n_id: 12, n_exp: 6, n_tex: 5, ..ModelSpec::default() }));
        let mut slot = None;
        assert!(DeviceModel::refresh(&mut slot, &Backend::Cpu, &model).is_none());
        let device = DeviceModel::refresh(&mut slot, &backend, &model);
        assert!(device.is_some());
        let (batch, len) = (2, 3 * model.n_vertices());
        let (id, exp, tex) = (random(batch * 12, 1), random(batch * 6, 2), random(batch * 5, 3));
        let (shapes, albedo) = decode_stacked(&backend, &model, device, batch, &id, &exp, Some(&tex));
        let (cpu_shapes, cpu_albedo) = decode_stacked(&Backend::Cpu, &model, None, batch, &id, &exp, Some(&tex));
        assert_close(&shapes, &cpu_shapes, 1e-5);
        assert_close(&albedo.unwrap(), &cpu_albedo.unwrap(), 1e-5);
        let (g, ga) = (random(batch * len, 4), random(batch * len, 5));
        let gpu = decode_adjoint(&backend, &model, device, batch, &g, Some(&ga));
        let cpu = decode_adjoint(&Backend::Cpu, &model, None, batch, &g, Some(&ga));
        assert_close(&gpu.0, &cpu.0, 1e-4);
        assert_close(&gpu.1, &cpu.1, 1e-4);
        assert_close(&gpu.2, &cpu.2, 1e-4);
        // Another model is noticed and uploaded anew.
        let other = Arc::new(MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, seed: 1, n_id: 12, n_exp: 6, n_tex: 5 }));
        let fresh = DeviceModel::refresh(&mut slot, &backend, &other).unwrap();
        assert!(Arc::ptr_eq(&fresh.model, &other));
    }

    #[test]
    fn a_wrong_coefficient_count_is_a_reported_error_not_a_panic() {
        let model = Arc::new(MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, n_id: 3, n_exp: 2, n_tex: 2, ..ModelSpec::default() }));
        let mut world = World::new();
        world.insert_resource(Model(model));
        world.insert_resource(Compute(Backend::Cpu));
        world.init_resource::<StageErrors>();
        let subject = world.spawn_empty().id();
        world.spawn((Frame { subject, subject_id: 0, index: 0, name: "bad".into() }, Coeffs::zeros(4, 2, 2)));
        let mut schedule = Schedule::default();
        schedule.add_systems((entry().build)(None).unwrap());
        schedule.run(&mut world);
        let errors = &world.resource::<StageErrors>().0;
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("frame bad has 4 identity coefficients, the model has 3"), "{}", errors[0]);
    }
}
