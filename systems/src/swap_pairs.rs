//! What PGN's image losses share: for every ordered frame pair (i → j) of a subject, the target
//! frame I_j and the swapped render I_{i→j} drawn over it (outside the face mask M²ᵈ the two are
//! the same picture, so window-based measures see no false edge at the silhouette), the pixel
//! weights M²ᵈ ⊙ W (W = 5 on eyes, nose and mouth), and the way a loss's gradient returns to
//! `Grad<RenderedSwaps>`. Each loss is the mean over all pairs of its per-pair value.

use bevy_ecs::prelude::*;
use faceforge_components::{Frame, Grad, Image, LossTerms, RenderedSwaps};
use faceforge_model::MorphableModel;

/// One (i → j) comparison.
pub struct Pair<'a> {
    /// Where the loss's own ops run.
    pub backend: &'a faceforge_kernels::Backend,
    pub width: usize,
    pub height: usize,
    /// I_j, rgb.
    pub target: &'a [f32],
    /// I_{i→j} inside M²ᵈ, I_j outside; rgb.
    pub rendered: Vec<f32>,
    /// M²ᵈ ⊙ W per pixel.
    pub weights: Vec<f32>,
    /// M²ᵈ per pixel.
    pub mask: &'a [f32],
}

/// W per pixel from the drawn triangle (the mean of its vertices' region weights), 0 off the face.
fn region_weights(m: &MorphableModel, tri: &[u32], mask: &[f32]) -> Vec<f32> {
    let per_vertex = m.region_weights();
    let per_triangle: Vec<f32> = m.triangles().chunks(3).map(|t| t.iter().map(|&v| per_vertex[v as usize]).sum::<f32>() / 3.0).collect();
    tri.iter().zip(mask).map(|(&t, &inside)| if t == 0 { 0.0 } else { inside * per_triangle[t as usize - 1] }).collect()
}

/// Runs `pair_loss` (value, d value / d rendered rgb) on every pair, records λ × the mean as
/// `term`, and adds λ × the mean's gradient into each frame's `Grad<RenderedSwaps>`.
pub fn apply(
    backend: &faceforge_kernels::Backend,
    m: &MorphableModel,
    term: &str,
    lambda: f32,
    terms: &mut LossTerms,
    frames: &mut Query<(&Frame, &Image, &RenderedSwaps, &mut Grad<RenderedSwaps>)>,
    pair_loss: impl Fn(&Pair) -> (f32, Vec<f32>) + Sync,
) -> Result<(), crate::StageError> {
    let mut jobs = Vec::new();
    for (index, (frame, image, swaps, _)) in frames.iter().enumerate() {
        if image.width != swaps.width || image.height != swaps.height {
            return Err(crate::StageError {
                system: "swap losses",
                message: format!("frame {}: image {}×{} but swaps drawn at {}×{}", frame.name, image.width, image.height, swaps.width, swaps.height),
            });
        }
        let weights = region_weights(m, &swaps.tri, &swaps.mask);
        for (k, (_, drawn)) in swaps.images.iter().enumerate() {
            let rendered: Vec<f32> = drawn.iter().zip(&image.rgb).enumerate().map(|(i, (d, t))| if swaps.mask[i / 3] > 0.0 { *d } else { *t }).collect();
            jobs.push((index, k, Pair { backend, width: image.width, height: image.height, target: &image.rgb, rendered, weights: weights.clone(), mask: &swaps.mask }));
        }
    }
    let pairs = jobs.len();
    if pairs == 0 {
        terms.terms.insert(term.into(), 0.0);
        return Ok(());
    }
    let results = faceforge_kernels::parallel::map(pairs, |p| pair_loss(&jobs[p].2));
    let mut grads: Vec<Vec<(usize, Vec<f32>)>> = Vec::new();
    let mut total = 0.0;
    for ((index, k, pair), (value, grad)) in jobs.iter().zip(results) {
        total += value;
        // Through the composite: only pixels inside M²ᵈ come from the render.
        let grad: Vec<f32> = grad.iter().enumerate().map(|(i, g)| g * pair.mask[i / 3] * lambda / pairs as f32).collect();
        while grads.len() <= *index {
            grads.push(Vec::new());
        }
        grads[*index].push((*k, grad));
    }
    for (index, (_, _, swaps, mut g)) in frames.iter_mut().enumerate() {
        if g.value.images.is_empty() {
            g.value = RenderedSwaps { width: swaps.width, height: swaps.height, images: swaps.images.iter().map(|(e, im)| (*e, vec![0.0; im.len()])).collect(), ..Default::default() };
        }
        for (k, grad) in grads.get(index).into_iter().flatten() {
            g.value.images[*k].1.iter_mut().zip(grad).for_each(|(a, b)| *a += b);
        }
    }
    terms.terms.insert(term.into(), lambda * total / pairs as f32);
    Ok(())
}

/// The pair's target and composited render as grey images.
pub fn grey(pair: &Pair) -> (Vec<f32>, Vec<f32>) {
    (faceforge_kernels::luminance::forward(pair.target), faceforge_kernels::luminance::forward(&pair.rendered))
}

/// The system of a pair loss: its weight from the scene (`term`, or `default_weight`), the mean
/// over all pairs recorded in `LossTerms`, the gradient added to `Grad<RenderedSwaps>`.
pub fn system(
    term: &'static str,
    default_weight: f32,
    pair_loss: impl Fn(&Pair) -> (f32, Vec<f32>) + Send + Sync + 'static,
) -> bevy_ecs::schedule::ScheduleConfigs<bevy_ecs::system::ScheduleSystem> {
    (move |model: Res<faceforge_components::Model>,
           compute: Res<faceforge_components::Compute>,
           weights: Res<faceforge_components::LossWeights>,
           mut terms: ResMut<LossTerms>,
           mut frames: Query<(&Frame, &Image, &RenderedSwaps, &mut Grad<RenderedSwaps>)>|
          -> Result<(), crate::StageError> {
        apply(&compute.0, &model.0, term, weights.get(term, default_weight), &mut terms, &mut frames, &pair_loss).map_err(|e| crate::StageError { system: term, ..e })
    })
    .pipe(crate::collect_errors)
    .in_set(crate::Stage::Loss)
}
