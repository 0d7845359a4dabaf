//! adam: the optimiser step of fit mode. Moves every free parameter that received a gradient —
//! coefficients (on frames, and on subjects when identity is shared), direct-pose and pinhole
//! parameters, lighting — by Adam, with PGN's schedule (the learning rate halves every `halve_every`
//! iterations).
//!
//! Each parameter kind has a unit and Adam runs on the parameter divided by it, so one learning
//! rate means the same for all: coefficients move in units of their σ, angles in `angle`
//! radians, and so on. A step whose gradients are not finite is rejected, the learning rate
//! halved for the rest of the run, and the event logged.

use crate::{parse_settings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Coeffs, Grad, Illumination, Iteration, Model, Moments, OptimizerState, PinholeParams, PoseParams};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Units {
    /// Radians.
    pub angle: f32,
    pub log_scale: f32,
    /// Pixels.
    pub translation: f32,
    /// SH coefficients.
    pub lighting: f32,
    /// Millimetres (a pinhole camera's translation).
    pub distance: f32,
}

impl Default for Units {
    fn default() -> Self {
        Self { angle: 0.1, log_scale: 0.05, translation: 5.0, lighting: 0.1, distance: 10.0 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamSettings {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Halve the learning rate every this many iterations (0: never). PGN halves it after 100k.
    pub halve_every: u32,
    pub units: Units,
}

impl Default for AdamSettings {
    fn default() -> Self {
        Self { lr: 0.03, beta1: 0.9, beta2: 0.999, eps: 1e-8, halve_every: 100, units: Units::default() }
    }
}

/// The kinds of parameter Adam moves, as they key its moments (and name them in checkpoints).
pub const PARAMETER_KINDS: [&str; 9] = ["id", "exp", "tex", "angles", "log_scale", "translation", "sh", "pinhole_angles", "pinhole_translation"];

/// One Adam step of `x` from gradient `g`, both divided by `unit` (per element).
fn step(state: &mut OptimizerState, s: &AdamSettings, lr: f32, key: (Entity, &'static str), x: &mut [f32], g: &[f32], unit: impl Fn(usize) -> f32) {
    if g.is_empty() || g.iter().all(|v| *v == 0.0) {
        return;
    }
    let moments = state.moments.entry(key).or_default();
    if moments.m.len() != g.len() {
        *moments = Moments { m: vec![0.0; g.len()], v: vec![0.0; g.len()], steps: 0 };
    }
    moments.steps += 1;
    let (c1, c2) = (1.0 - s.beta1.powi(moments.steps), 1.0 - s.beta2.powi(moments.steps));
    for k in 0..g.len().min(x.len()) {
        let u = unit(k);
        let gk = g[k] * u;
        moments.m[k] = s.beta1 * moments.m[k] + (1.0 - s.beta1) * gk;
        moments.v[k] = s.beta2 * moments.v[k] + (1.0 - s.beta2) * gk * gk;
        x[k] -= lr * u * (moments.m[k] / c1) / ((moments.v[k] / c2).sqrt() + s.eps);
    }
}

fn finite(g: &[f32]) -> bool {
    g.iter().all(|v| v.is_finite())
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "adam",
        stage: Stage::Step,
        reads: data![Grad<Coeffs>],
        writes: data![Coeffs, PoseParams, PinholeParams, Illumination],
        reads_if_present: data![Grad<PoseParams>, Grad<PinholeParams>, Grad<Illumination>],
        adjoint: None,
        summary: "Adam step of every fitted parameter, learning rate halved every N iterations",
        build: |settings| {
            let settings: AdamSettings = parse_settings(settings)?;
            Ok((move |model: Res<Model>,
                      iteration: Res<Iteration>,
                      mut state: ResMut<OptimizerState>,
                      mut coeffs: Query<(Entity, &mut Coeffs, &Grad<Coeffs>)>,
                      mut poses: Query<(Entity, &mut PoseParams, &Grad<PoseParams>)>,
                      mut pinholes: Query<(Entity, &mut PinholeParams, &Grad<PinholeParams>)>,
                      mut lights: Query<(Entity, &mut Illumination, &Grad<Illumination>)>| {
                let ok = coeffs.iter().all(|(_, _, g)| finite(&g.value.id) && finite(&g.value.exp) && finite(&g.value.tex))
                    && poses.iter().all(|(_, _, g)| finite(&g.value.angles) && g.value.log_scale.is_finite() && finite(&g.value.translation))
                    && pinholes.iter().all(|(_, _, g)| finite(&g.value.angles) && finite(&g.value.translation))
                    && lights.iter().all(|(_, _, g)| finite(&g.value.sh));
                if !ok {
                    state.rescue *= 0.5;
                    tracing::warn!("iteration {}: a gradient is not finite; step rejected, learning rate halved to {}", iteration.0, settings.lr * state.rescue);
                    return;
                }
                let halvings = iteration.0.checked_div(settings.halve_every).unwrap_or(0);
                let lr = settings.lr * 0.5f32.powi(halvings as i32) * state.rescue;
                let m = &model.0;
                let s = &settings;
                for (e, mut c, g) in coeffs.iter_mut() {
                    let c = &mut *c;
                    step(&mut state, s, lr, (e, "id"), &mut c.id, &g.value.id, |k| m.id_sigma()[k]);
                    step(&mut state, s, lr, (e, "exp"), &mut c.exp, &g.value.exp, |k| m.exp_sigma()[k]);
                    step(&mut state, s, lr, (e, "tex"), &mut c.tex, &g.value.tex, |k| m.albedo_sigma()[k]);
                }
                for (e, mut p, g) in poses.iter_mut() {
                    let p = &mut *p;
                    let g = &g.value;
                    step(&mut state, s, lr, (e, "angles"), &mut p.angles, &g.angles, |_| s.units.angle);
                    step(&mut state, s, lr, (e, "log_scale"), std::slice::from_mut(&mut p.log_scale), &[g.log_scale], |_| s.units.log_scale);
                    step(&mut state, s, lr, (e, "translation"), &mut p.translation, &g.translation, |_| s.units.translation);
                }
                for (e, mut p, g) in pinholes.iter_mut() {
                    step(&mut state, s, lr, (e, "pinhole_angles"), &mut p.angles, &g.value.angles, |_| s.units.angle);
                    step(&mut state, s, lr, (e, "pinhole_translation"), &mut p.translation, &g.value.translation, |_| s.units.distance);
                }
                for (e, mut l, g) in lights.iter_mut() {
                    step(&mut state, s, lr, (e, "sh"), &mut l.sh, &g.value.sh, |_| s.units.lighting);
                }
            })
            .in_set(Stage::Step))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faceforge_components::Compute;
    use faceforge_model::{MorphableModel, ModelSpec, Preset};

    /// One step from a finite gradient moves the coefficients against it by about lr·σ; a
    /// non-finite gradient leaves them where they are.
    #[test]
    fn steps_finite_gradients_and_rejects_the_rest() {
        let model = MorphableModel::generate(&ModelSpec { preset: Preset::Tiny, ..ModelSpec::default() });
        let (n_id, n_exp, n_tex) = (model.n_id(), model.n_exp(), model.n_albedo());
        let sigma0 = model.id_sigma()[0];
        let mut world = World::new();
        world.insert_resource(Model(std::sync::Arc::new(model)));
        world.insert_resource(Compute(faceforge_kernels::Backend::Cpu));
        world.insert_resource(Iteration(0));
        world.init_resource::<OptimizerState>();
        let mut grad = Coeffs::zeros(n_id, n_exp, n_tex);
        grad.id[0] = 2.0;
        let e = world.spawn((Coeffs::zeros(n_id, n_exp, n_tex), Grad { value: grad.clone() })).id();
        let mut schedule = Schedule::default();
        schedule.add_systems((entry().build)(Some("(lr: 0.1)")).unwrap());
        schedule.run(&mut world);
        let moved = world.get::<Coeffs>(e).unwrap().id[0];
        assert!((moved + 0.1 * sigma0).abs() < 1e-3 * sigma0, "first Adam step is −lr·σ: {moved} vs {}", -0.1 * sigma0);
        grad.id[1] = f32::NAN;
        world.entity_mut(e).insert(Grad { value: grad });
        schedule.run(&mut world);
        assert_eq!(world.get::<Coeffs>(e).unwrap().id[0], moved, "a non-finite gradient is not stepped");
    }
}
