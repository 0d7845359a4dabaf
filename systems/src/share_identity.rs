//! share_identity: one identity (and albedo) per subject, shared by all its frames — PGN's
//! multi-frame setting, where the frames' features are averaged into one α_id while expression
//! and pose stay per frame. In fit mode the subject entity holds the shared coefficients (started
//! at the average of its frames'), copies them into each frame's `Coeffs`, and
//! `share_identity_backward` sums the frames' gradients back onto it, so the step moves one
//! identity per subject. With `expression: true` the expression is shared too (MVF-Net: one
//! identity and expression per triplet of views taken at the same instant).

use crate::{parse_settings, NoSettings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{accumulate, Coeffs, Frame, Grad, Subject};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShareSettings {
    /// Share the expression as well (the frames show one instant).
    pub expression: bool,
}

fn average(rows: &[&Vec<f32>]) -> Vec<f32> {
    let mut out = vec![0.0; rows.first().map_or(0, |r| r.len())];
    for r in rows {
        out.iter_mut().zip(r.iter()).for_each(|(o, v)| *o += v / rows.len() as f32);
    }
    out
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "share_identity",
        stage: Stage::Encode,
        reads: data![Coeffs, Subject],
        writes: data![Coeffs],
        reads_if_present: data![],
        adjoint: Some("share_identity_backward"),
        summary: "one identity and albedo per subject, shared by its frames (PGN's multi-frame fusion)",
        build: |settings| {
            let settings: ShareSettings = parse_settings(settings)?;
            Ok((move |mut subjects: Query<(Entity, Option<&mut Coeffs>), (With<Subject>, Without<Frame>)>,
                 mut frames: Query<(&Frame, &mut Coeffs), Without<Subject>>,
                 mut commands: Commands| {
                let mut shared: HashMap<Entity, Coeffs> = HashMap::new();
                for (subject, coeffs) in subjects.iter_mut() {
                    let value = match coeffs {
                        Some(c) => c.clone(),
                        None => {
                            let mine: Vec<&Coeffs> = frames.iter().filter(|(f, _)| f.subject == subject).map(|(_, c)| c).collect();
                            let start = Coeffs {
                                id: average(&mine.iter().map(|c| &c.id).collect::<Vec<_>>()),
                                exp: if settings.expression { average(&mine.iter().map(|c| &c.exp).collect::<Vec<_>>()) } else { Vec::new() },
                                tex: average(&mine.iter().map(|c| &c.tex).collect::<Vec<_>>()),
                            };
                            commands.entity(subject).insert(start.clone());
                            start
                        }
                    };
                    shared.insert(subject, value);
                }
                for (frame, mut coeffs) in frames.iter_mut() {
                    if let Some(s) = shared.get(&frame.subject) {
                        coeffs.id.clone_from(&s.id);
                        coeffs.tex.clone_from(&s.tex);
                        if !s.exp.is_empty() {
                            coeffs.exp.clone_from(&s.exp);
                        }
                    }
                }
            })
            .in_set(Stage::Encode))
        },
    }
}

pub fn backward_entry() -> SystemEntry {
    SystemEntry {
        name: "share_identity_backward",
        stage: Stage::BackwardEncode,
        reads: data![Grad<Coeffs>],
        writes: data![Grad<Coeffs>],
        reads_if_present: data![],
        adjoint: None,
        summary: "adjoint of share_identity: the frames' identity and albedo (and shared expression) gradients summed onto their subject",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|mut frames: Query<(&Frame, &mut Grad<Coeffs>), Without<Subject>>, mut subjects: Query<(&Coeffs, &mut Grad<Coeffs>), (With<Subject>, Without<Frame>)>| {
                for (frame, mut g) in frames.iter_mut() {
                    let Ok((shared, mut to)) = subjects.get_mut(frame.subject) else { continue };
                    let (id, tex) = (std::mem::take(&mut g.value.id), std::mem::take(&mut g.value.tex));
                    if !id.is_empty() {
                        accumulate(&mut to.value.id, &id);
                    }
                    if !tex.is_empty() {
                        accumulate(&mut to.value.tex, &tex);
                    }
                    // A subject holds an expression only when it shares one.
                    if !shared.exp.is_empty() {
                        let exp = std::mem::take(&mut g.value.exp);
                        if !exp.is_empty() {
                            accumulate(&mut to.value.exp, &exp);
                        }
                    }
                }
            })
            .in_set(Stage::BackwardEncode))
        },
    }
}
