//! faceforge's learn mode: PGN's networks as a burn module (`network`), the `Learner` resource
//! that holds them with their optimiser, and the systems that run them inside the ECS graph
//! (`encode`, `encode_backward`, `encoder_step`); and 2DASL's input and output formats (the
//! facial landmark map, the 62-parameter vector), groundwork for its learn mode.

pub mod consistency;
pub mod canonical;
pub mod conditional;
pub mod critic;
pub mod device;
pub mod encode;
pub mod landmark_map;
pub mod learner;
pub mod loss_weighted_coefficients;
pub mod network;
pub mod params62;
pub mod self_critic;
pub mod self_supervision;

pub use device::{DeviceChoice, LearnDevice};
pub use learner::{LearnError, Learner, WeightsInfo};
pub use network::{Heads, LandmarkHead, NetworkSpec, Trained};

/// The learn-mode systems a scene can name (beside `faceforge_systems::registry()`).
pub fn registry() -> Vec<faceforge_systems::SystemEntry> {
    vec![
        encode::entry(),
        conditional::entry(),
        encode::backward_entry(),
        encode::step_entry(),
        loss_weighted_coefficients::entry(),
        self_supervision::entry(),
        self_critic::entry(),
    ]
}
