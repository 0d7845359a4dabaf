//! reconstruct: coefficients → mesh (S = S̄ + B_id α + B_exp β) and albedo (T = T̄ + B_tex γ) for
//! every frame at once, as one batched decode per basis.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Albedo, Coeffs, Compute, Frame, Mesh, Model};
use faceforge_kernels::decode::{self, DecodeShape};
use faceforge_kernels::launch::{download, upload};
use faceforge_kernels::{Backend, Handle};
use faceforge_model::MorphableModel;
use std::sync::Arc;
use serde::Deserialize;

const NAME: &str = "reconstruct";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconstructSettings {
    /// Also decode the albedo (the model's per-vertex colours).
    pub albedo: bool,
}

impl Default for ReconstructSettings {
    fn default() -> Self {
        Self { albedo: true }
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: NAME,
        stage: Stage::Reconstruct,
        reads: &["Coeffs"],
        writes: &["Mesh", "Albedo"],
        summary: "coefficients → mesh and albedo, one batched decode per basis",
        build: |settings| {
            let settings: ReconstructSettings = parse_settings(settings)?;
            let mut device = None;
            Ok((move |model: Res<Model>, compute: Res<Compute>, frames: Query<(Entity, &Frame, &Coeffs)>, commands: Commands| {
                reconstruct(&settings, &model, &compute.0, &mut device, &frames, commands)
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
    mean_shape: Handle,
    id: Handle,
    exp: Handle,
    mean_albedo: Handle,
    albedo: Handle,
}

impl DeviceModel {
    /// The device copy of `model` for `backend` (None on the CPU), made or remade in `slot`.
    pub fn refresh<'a>(slot: &'a mut Option<DeviceModel>, backend: &Backend, model: &Arc<MorphableModel>) -> Option<&'a DeviceModel> {
        let Backend::Gpu { client, .. } = backend else { return None };
        if slot.as_ref().is_none_or(|d| !Arc::ptr_eq(&d.model, model)) {
            *slot = Some(DeviceModel {
                model: model.clone(),
                mean_shape: upload(client, model.mean_shape()),
                id: upload(client, model.id_basis()),
                exp: upload(client, model.exp_basis()),
                mean_albedo: upload(client, model.mean_albedo()),
                albedo: upload(client, model.albedo_basis()),
            });
        }
        slot.as_ref()
    }
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
    let len = 3 * m.n_vertices();
    let shape_id = DecodeShape { batch, components: m.n_id(), len, base_per_item: false };
    let shape_exp = DecodeShape { batch, components: m.n_exp(), len, base_per_item: true };
    let shape_tex = DecodeShape { batch, components: m.n_albedo(), len, base_per_item: false };
    match (backend, device) {
        (Backend::Gpu { client, .. }, Some(d)) => {
            let with_id = decode::forward_device(client, shape_id, &d.mean_shape, &d.id, &upload(client, id));
            let shapes = download(client, decode::forward_device(client, shape_exp, &with_id, &d.exp, &upload(client, exp)));
            let albedo = tex.map(|t| download(client, decode::forward_device(client, shape_tex, &d.mean_albedo, &d.albedo, &upload(client, t))));
            (shapes, albedo)
        }
        _ => {
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
            let g = upload(client, grad_shapes);
            let id = download(client, decode::backward_device(client, shape(m.n_id()), &d.id, &g));
            let exp = download(client, decode::backward_device(client, shape(m.n_exp()), &d.exp, &g));
            let tex = match grad_albedo {
                Some(ga) => download(client, decode::backward_device(client, shape(m.n_albedo()), &d.albedo, &upload(client, ga))),
                None => vec![0.0; batch * m.n_albedo()],
            };
            (id, exp, tex)
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
