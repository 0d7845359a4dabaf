//! reconstruct: coefficients → mesh (S = S̄ + B_id α + B_exp β) and albedo (T = T̄ + B_tex γ) for
//! every frame at once, as one batched decode per basis.

use crate::{collect_errors, parse_settings, Stage, StageError, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Albedo, Coeffs, Compute, Frame, Mesh, Model};
use faceforge_kernels::decode::{self, DecodeShape};
use faceforge_kernels::Backend;
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
            Ok((move |model: Res<Model>, compute: Res<Compute>, frames: Query<(Entity, &Frame, &Coeffs)>, commands: Commands| {
                reconstruct(&settings, &model, &compute.0, &frames, commands)
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

/// Decodes a batch of coefficient sets: (shapes B × 3N, albedo B × 3N when asked).
pub fn decode_batch(
    backend: &Backend,
    m: &faceforge_model::MorphableModel,
    frames: &[(&Frame, &Coeffs)],
    with_albedo: bool,
) -> Result<(Vec<f32>, Option<Vec<f32>>), StageError> {
    let (batch, len) = (frames.len(), 3 * m.n_vertices());
    let id = stack(frames.iter().map(|(f, c)| (*f, c.id.as_slice())), m.n_id(), "identity")?;
    let exp = stack(frames.iter().map(|(f, c)| (*f, c.exp.as_slice())), m.n_exp(), "expression")?;
    let with_id = decode::forward(backend, DecodeShape { batch, components: m.n_id(), len, base_per_item: false }, m.mean_shape(), m.id_basis(), &id);
    let shapes = decode::forward(backend, DecodeShape { batch, components: m.n_exp(), len, base_per_item: true }, &with_id, m.exp_basis(), &exp);
    let albedo = if with_albedo {
        let tex = stack(frames.iter().map(|(f, c)| (*f, c.tex.as_slice())), m.n_albedo(), "albedo")?;
        Some(decode::forward(backend, DecodeShape { batch, components: m.n_albedo(), len, base_per_item: false }, m.mean_albedo(), m.albedo_basis(), &tex))
    } else {
        None
    };
    Ok((shapes, albedo))
}

fn reconstruct(
    settings: &ReconstructSettings,
    model: &Model,
    backend: &Backend,
    frames: &Query<(Entity, &Frame, &Coeffs)>,
    mut commands: Commands,
) -> Result<(), StageError> {
    let rows: Vec<_> = frames.iter().collect();
    if rows.is_empty() {
        return Ok(());
    }
    let len = 3 * model.0.n_vertices();
    let pairs: Vec<(&Frame, &Coeffs)> = rows.iter().map(|(_, f, c)| (*f, *c)).collect();
    let (shapes, albedo) = decode_batch(backend, &model.0, &pairs, settings.albedo)?;
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
    use faceforge_kernels::testing::{assert_close, wgpu_backend};
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
                id: model.id_sigma().iter().map(|s| s * rng.normal() as f32).collect(),
                exp: model.exp_sigma().iter().map(|s| s * rng.normal() as f32).collect(),
                tex: model.albedo_sigma().iter().map(|s| s * rng.normal() as f32).collect(),
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
