//! lighting: each frame's spherical-harmonics lighting as free parameters (MGCNet's θ, 9 bands
//! per RGB channel = 27 coefficients; with `mono: true`, CEST's ℓ, one set of 9 for all
//! channels), started at a white ambient light of `ambient` with every directional and
//! quadratic band at 0; `render` shades with it, `render_backward` returns its
//! gradient and `adam` fits it. A frame that already has lighting (a resumed run) keeps it.

use crate::{parse_settings, Stage, SystemEntry};
use bevy_ecs::prelude::*;
use faceforge_components::{Frame, Illumination};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LightingSettings {
    /// The starting DC coefficient of each channel.
    pub ambient: f32,
    /// 9 coefficients shared by the channels instead of 27.
    pub mono: bool,
}

impl Default for LightingSettings {
    fn default() -> Self {
        Self { ambient: 0.8, mono: false }
    }
}

pub fn entry() -> SystemEntry {
    SystemEntry {
        name: "lighting",
        stage: Stage::Encode,
        reads: data![Frame],
        writes: data![Illumination],
        reads_if_present: data![],
        adjoint: None,
        summary: "SH lighting per frame as free parameters (27 RGB, or 9 mono), started at ambient light",
        build: |settings| {
            let settings: LightingSettings = parse_settings(settings)?;
            Ok((move |frames: Query<Entity, (With<Frame>, Without<Illumination>)>, mut commands: Commands| {
                for e in &frames {
                    let count = if settings.mono { 9 } else { 27 };
                    commands.entity(e).insert(Illumination { sh: (0..count).map(|k| if k % 9 == 0 { settings.ambient } else { 0.0 }).collect() });
                }
            })
            .in_set(Stage::Encode))
        },
    }
}
