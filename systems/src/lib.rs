//! faceforge's pipeline stages as bevy_ecs systems, one stage per file, and the registry that
//! names them for scenes: what each system reads and writes, and the stage it runs in.

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleConfigs;
use bevy_ecs::system::ScheduleSystem;
use faceforge_components::{accumulate, Albedo, Coeffs, Frame, Grad, Illumination, Landmarks3d, LossTerms, Mesh, PinholeParams, Pose, PoseParams, ReflectanceRenders, Rendered, RenderedSwaps, Subject, SwappedTextures, SynthesisedViews, VertexColors};
use std::fmt;

/// The data kinds of a registry line, by type: `data![Coeffs, Grad<Mesh>]` (defined before the
/// modules so they can use it).
#[macro_export]
macro_rules! data {
    ($($t:ty),* $(,)?) => { vec![$($crate::DataName::of::<$t>()),*] };
}

pub mod adam;
pub mod direct_pose;
pub mod lighting;
pub mod loss_align;
pub mod loss_census;
pub mod loss_depth;
pub mod loss_epipolar;
pub mod loss_flow;
pub mod loss_guidance;
pub mod loss_identity;
pub mod loss_landmark;
pub mod loss_photo;
pub mod loss_photometric;
pub mod loss_pixel;
pub mod loss_reflectance;
pub mod loss_regulariser;
pub mod loss_render;
pub mod loss_semantic;
pub mod loss_supervised;
pub mod loss_temporal;
pub mod loss_vertex_distance;
pub mod oracle;
pub mod pgn;
pub mod pinhole_pose;
pub mod reconstruct;
pub mod reconstruct_backward;
pub mod render;
pub mod render_backward;
pub mod render_reflectance;
pub mod render_swapped;
pub mod sample_texture;
pub mod share_identity;
pub mod swap_backward;
pub mod swap_pairs;
pub mod swap_visible_texture;
pub mod vertex_normals;
pub mod unwrap;
pub mod view_synthesis;
pub mod visibility;

/// The stages, in the order a schedule runs them: the forward stages, the losses, the adjoints in
/// reverse order, the optimiser step.
#[derive(SystemSet, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Encode,
    Pgn,
    Reconstruct,
    /// Per-vertex geometry derived from the mesh (normals, …), read by visibility and shading.
    Geometry,
    SampleTexture,
    SwapVisibleTexture,
    Render,
    /// Images derived from the renders' rasters: other views synthesised into each view
    /// (MGCNet), re-renders with other reflectances (CEST).
    ViewSynthesis,
    Loss,
    BackwardViewSynthesis,
    BackwardRender,
    BackwardSwapVisibleTexture,
    BackwardSampleTexture,
    BackwardReconstruct,
    BackwardPgn,
    BackwardEncode,
    Step,
}

impl Stage {
    /// The adjoint stages (between the losses and the step).
    pub fn is_adjoint(self) -> bool {
        self > Stage::Loss && self < Stage::Step
    }

    pub const ALL: [Stage; 17] = [
        Stage::Encode,
        Stage::Pgn,
        Stage::Reconstruct,
        Stage::Geometry,
        Stage::SampleTexture,
        Stage::SwapVisibleTexture,
        Stage::Render,
        Stage::ViewSynthesis,
        Stage::Loss,
        Stage::BackwardViewSynthesis,
        Stage::BackwardRender,
        Stage::BackwardSwapVisibleTexture,
        Stage::BackwardSampleTexture,
        Stage::BackwardReconstruct,
        Stage::BackwardPgn,
        Stage::BackwardEncode,
        Stage::Step,
    ];
}

/// A stage's failure: which system, on what, and why. Systems return it instead of panicking;
/// the run stops and reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("system `{system}`: {message}")]
pub struct StageError {
    pub system: &'static str,
    pub message: String,
}

/// Errors the systems reported during the last schedule run.
#[derive(Resource, Debug, Default, Clone)]
pub struct StageErrors(pub Vec<StageError>);

/// Where fallible systems pipe their result.
pub fn collect_errors(In(result): In<Result<(), StageError>>, mut errors: ResMut<StageErrors>) {
    if let Err(e) = result {
        errors.0.push(e);
    }
}

/// Starts every iteration's gradients at empty (zero) and clears the loss terms, so the loss and
/// backward systems accumulate from nothing. Every frame and subject gets every gradient
/// component up front: systems of one stage may add to the same gradient, and adding to a
/// component that exists is safe where inserting one from two systems is not. The graph builder
/// runs it first in every schedule.
pub fn clear_gradients(entities: Query<Entity, Or<(With<Frame>, With<Subject>)>>, mut terms: ResMut<LossTerms>, mut commands: Commands) {
    terms.terms.clear();
    for e in &entities {
        commands.entity(e).insert((
            Grad::<Rendered>::default(),
            Grad::<RenderedSwaps>::default(),
            Grad::<SwappedTextures>::default(),
            Grad::<VertexColors>::default(),
            Grad::<Mesh>::default(),
            Grad::<Albedo>::default(),
            Grad::<Illumination>::default(),
            Grad::<Pose>::default(),
            Grad::<PoseParams>::default(),
            Grad::<Coeffs>::default(),
            Grad::<Landmarks3d>::default(),
            Grad::<PinholeParams>::default(),
            Grad::<SynthesisedViews>::default(),
            Grad::<ReflectanceRenders>::default(),
        ));
    }
}

/// Adds a pose gradient into a frame's (the sum takes the kind of the incoming gradient: the
/// empty one is a zero weak-perspective pose).
pub fn add_pose_grad(into: &mut Pose, delta: &Pose) {
    let sum: Vec<f32> = into.camera().1.iter().zip(delta.camera().1).map(|(a, b)| a + b).collect();
    *into = delta.from_camera(&sum);
}

/// Adds a mesh and a pose gradient into a frame's.
pub(crate) fn add_geometry_grad(d_positions: &[f32], d_pose: &Pose, g_mesh: &mut Grad<Mesh>, g_pose: &mut Grad<Pose>) {
    accumulate(&mut g_mesh.value.positions, d_positions);
    add_pose_grad(&mut g_pose.value, d_pose);
}

/// Adds the gradient of some vertices' positions (xyz per listed vertex) into a frame's whole-mesh
/// gradient of `n_vertices`, and a pose gradient: what the landmark-based losses write.
pub(crate) fn add_vertex_grad(vertices: &[u32], d_positions: &[f32], d_pose: &Pose, n_vertices: usize, g_mesh: &mut Grad<Mesh>, g_pose: &mut Grad<Pose>) {
    let d_mesh = &mut g_mesh.value.positions;
    if d_mesh.is_empty() {
        d_mesh.resize(3 * n_vertices, 0.0);
    }
    for (l, &v) in vertices.iter().enumerate() {
        for c in 0..3 {
            d_mesh[3 * v as usize + c] += d_positions[3 * l + c];
        }
    }
    add_pose_grad(&mut g_pose.value, d_pose);
}

/// The sign, 0 at 0: the subgradient of |x| the L1 losses use (`f32::signum` gives 1 at +0, which
/// would push a parameter sitting at zero, e.g. every coefficient of the mean face).
pub fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// A data kind a system reads or writes: a component's or resource's type, named by the type
/// itself (`DataName::of::<Grad<Mesh>>()`, or `data![Grad<Mesh>]`), so renaming a component
/// renames it in the registry too. Shown without module paths (`Grad<Mesh>`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataName(&'static str);

impl DataName {
    pub fn of<T: ?Sized + 'static>() -> Self {
        DataName(std::any::type_name::<T>())
    }

    /// The type's name without module paths: `faceforge_components::Grad<faceforge_components::Mesh>`
    /// → `Grad<Mesh>`.
    pub fn short(&self) -> String {
        let mut out = String::new();
        let mut word = String::new();
        for c in self.0.chars() {
            if c.is_alphanumeric() || c == '_' || c == ':' {
                word.push(c);
            } else {
                out.push_str(word.rsplit("::").next().unwrap_or(""));
                word.clear();
                out.push(c);
            }
        }
        out.push_str(word.rsplit("::").next().unwrap_or(""));
        out
    }

    /// Whether this is a gradient (`Grad<…>`).
    pub fn is_gradient(&self) -> bool {
        self.short().starts_with("Grad<")
    }
}

impl fmt::Display for DataName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl fmt::Debug for DataName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// A system's bad `settings` in a scene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One registry line: everything the graph builder needs to know about a system.
#[derive(Clone)]
pub struct SystemEntry {
    pub name: &'static str,
    pub stage: Stage,
    /// What it needs: the graph refuses a scene where nothing upstream produces these.
    pub reads: Vec<DataName>,
    pub writes: Vec<DataName>,
    /// What it reads when present (a frame's lighting, a visibility test): not required, but a
    /// system that produces them is kept for it.
    pub reads_if_present: Vec<DataName>,
    /// The name of the system that carries this one's gradients back (a forward system's
    /// adjoint); the graph inserts it where a gradient flows. `None` for a system no parameter's
    /// gradient passes through (an oracle, a visibility test, an initialiser) or whose derivative
    /// its consumers' adjoints carry (vertex normals, inside `render_backward`).
    pub adjoint: Option<&'static str>,
    /// One line for `faceforge systems` and error messages.
    pub summary: &'static str,
    /// Checks the scene's settings (their RON text) for this system and returns the system
    /// configured with them.
    pub build: fn(Option<&str>) -> Result<ScheduleConfigs<ScheduleSystem>, SettingsError>,
}

impl fmt::Debug for SystemEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemEntry").field("name", &self.name).field("stage", &self.stage).finish()
    }
}

/// Every system a scene can name. Adding a system is one file and one line here.
pub fn registry() -> Vec<SystemEntry> {
    vec![
        oracle::coeffs_entry(),
        oracle::lighting_entry(),
        oracle::pose_entry(),
        lighting::entry(),
        reconstruct::entry(),
        vertex_normals::entry(),
        sample_texture::entry(),
        visibility::entry(),
        swap_visible_texture::entry(),
        render::entry(),
        render_swapped::entry(),
        render_backward::entry(),
        swap_backward::render_swapped_entry(),
        swap_backward::swap_entry(),
        swap_backward::sample_entry(),
        reconstruct_backward::entry(),
        pgn::entry(),
        pgn::backward_entry(),
        direct_pose::entry(),
        direct_pose::backward_entry(),
        pinhole_pose::entry(),
        pinhole_pose::backward_entry(),
        view_synthesis::entry(),
        view_synthesis::backward_entry(),
        render_reflectance::entry(),
        render_reflectance::backward_entry(),
        share_identity::entry(),
        share_identity::backward_entry(),
        loss_landmark::entry(),
        loss_guidance::entry(),
        loss_regulariser::entry(),
        loss_render::entry(),
        loss_pixel::entry(),
        loss_depth::entry(),
        loss_epipolar::entry(),
        loss_identity::entry(),
        loss_reflectance::entry(),
        loss_photometric::entry(),
        loss_photo::entry(),
        loss_align::entry(),
        loss_census::entry(),
        loss_flow::entry(),
        loss_semantic::entry(),
        loss_supervised::coefficients_entry(),
        loss_vertex_distance::entry(),
        loss_temporal::entry(),
        loss_supervised::pose_entry(),
        adam::entry(),
    ]
}

/// The settings of a system that takes none: any key is refused.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// Reads a system's settings (RON text) into its typed struct (defaults when absent), so a bad
/// key or value names the field.
pub fn parse_settings<T: serde::de::DeserializeOwned + Default>(settings: Option<&str>) -> Result<T, SettingsError> {
    use ron::extensions::Extensions;
    match settings {
        None => Ok(T::default()),
        Some(text) => ron::Options::default()
            .with_default_extension(Extensions::IMPLICIT_SOME | Extensions::UNWRAP_VARIANT_NEWTYPES)
            .from_str(text)
            .map_err(|e| SettingsError(format!("{} (at {}:{} of the settings)", e.code, e.span.start.line, e.span.start.col))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_names_come_from_the_types_and_show_without_module_paths() {
        assert_eq!(DataName::of::<Grad<Mesh>>().to_string(), "Grad<Mesh>");
        assert!(std::any::type_name::<Grad<Mesh>>().starts_with("faceforge_components::"));
        assert_eq!(data![Coeffs, Grad<Pose>].iter().map(DataName::short).collect::<Vec<_>>(), ["Coeffs", "Grad<Pose>"]);
        assert!(DataName::of::<Grad<Coeffs>>().is_gradient() && !DataName::of::<Coeffs>().is_gradient());
    }

    #[test]
    fn every_adjoint_named_in_the_registry_exists_and_runs_in_an_adjoint_stage() {
        let all = registry();
        for e in all.iter().filter(|e| e.adjoint.is_some()) {
            let adjoint = all.iter().find(|a| Some(a.name) == e.adjoint).unwrap_or_else(|| panic!("{}: no adjoint {:?}", e.name, e.adjoint));
            assert!(adjoint.stage.is_adjoint() && !e.stage.is_adjoint(), "{} → {}", e.name, adjoint.name);
        }
    }
}
