//! oracle_coeffs, oracle_pose, oracle_lighting: copy the synthetic data's exact coefficients,
//! pose or lighting into the frame's parameters. They make the "at the ground truth" checks and
//! the upper-bound rows of ablations (e.g. PGN against the true pose) graph variants.

use crate::{parse_settings, Stage, SystemEntry, NoSettings};
use bevy_ecs::prelude::*;
use faceforge_components::{GroundTruth, Illumination};
use faceforge_components::{Coeffs, Pose};

pub fn coeffs_entry() -> SystemEntry {
    SystemEntry {
        name: "oracle_coeffs",
        stage: Stage::Encode,
        reads: data![GroundTruth],
        writes: data![Coeffs],
        reads_if_present: data![],
        adjoint: None,
        summary: "the exact coefficients of synthetic data (upper bound, tests)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|frames: Query<(Entity, &GroundTruth)>, mut commands: Commands| {
                for (e, truth) in &frames {
                    commands.entity(e).insert(truth.coeffs.clone());
                }
            })
            .in_set(Stage::Encode))
        },
    }
}

pub fn pose_entry() -> SystemEntry {
    SystemEntry {
        name: "oracle_pose",
        stage: Stage::Pgn,
        reads: data![GroundTruth],
        writes: data![Pose],
        reads_if_present: data![],
        adjoint: None,
        summary: "the exact pose of synthetic data (upper bound against PGN, tests)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|frames: Query<(Entity, &GroundTruth)>, mut commands: Commands| {
                for (e, truth) in &frames {
                    if let Some(pose) = &truth.pose {
                        commands.entity(e).insert(pose.clone());
                    }
                }
            })
            .in_set(Stage::Pgn))
        },
    }
}

pub fn lighting_entry() -> SystemEntry {
    SystemEntry {
        name: "oracle_lighting",
        stage: Stage::Encode,
        reads: data![GroundTruth],
        writes: data![Illumination],
        reads_if_present: data![],
        adjoint: None,
        summary: "the exact SH lighting of synthetic data (upper bound, tests)",
        build: |settings| {
            parse_settings::<NoSettings>(settings)?;
            Ok((|frames: Query<(Entity, &GroundTruth)>, mut commands: Commands| {
                for (e, truth) in &frames {
                    if let Some(sh) = &truth.sh {
                        commands.entity(e).insert(Illumination { sh: sh.clone() });
                    }
                }
            })
            .in_set(Stage::Encode))
        },
    }
}

