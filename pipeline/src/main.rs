//! The `faceforge` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use faceforge::scene::graph::plan;
use faceforge::io::outputs::{write_obj, MeshView};
use faceforge::LoadedScene;
use faceforge_model::{MorphableModel, ModelSpec, Preset};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "faceforge", version, about = "3D face reconstruction from images, multi-view sets and clips, as a dataflow pipeline on an ECS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which part of a sharded run this process does.
#[derive(clap::Args, Clone, Debug, Default)]
struct ShardArgs {
    /// Fit only shard I of N (from 0) of a folder's subjects, into OUT/shard-I-of-N; started
    /// again, it skips the subjects it finished. Without it: SLURM_ARRAY_TASK_ID, or
    /// JOB_COMPLETION_INDEX (Kubernetes) with --shards.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// How many shards, when the index comes from the environment.
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
}

impl ShardArgs {
    fn resolve(&self) -> anyhow::Result<Option<faceforge::run::shard::Shard>> {
        faceforge::run::shard::Shard::from_args(self.shard.as_deref(), self.shards, &|name| std::env::var(name).ok())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check a scene (schema, graph, outputs), or every variant of a sweep, without running it;
    /// say which systems the graph dropped and which parameters no loss reaches.
    Check {
        scene: PathBuf,
        /// Print the derived graph: stage by stage, each system with what it reads and writes.
        #[arg(long)]
        graph: bool,
        /// Override a scene field: path=value (RON), e.g. --set iterations=10 --set backend=Cpu.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<String>,
    },
    /// Run a scene and write its outputs; Ctrl-C checkpoints and stops, `--resume` continues.
    Run {
        /// The scene (not with --resume, which takes the scene from the checkpoint).
        #[arg(required_unless_present = "resume", conflicts_with = "resume")]
        scene: Option<PathBuf>,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Overwrite an output folder that holds a previous run.
        #[arg(long)]
        force: bool,
        /// Continue the run whose output folder this is, from its checkpoint.json.
        #[arg(long, value_name = "OUT")]
        resume: Option<PathBuf>,
        /// Stop at the first bad input of a `Folder` scene instead of skipping it
        /// (`--set data.Folder.strict=true`).
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        shard: ShardArgs,
        /// Stop after this many iterations (of this process), checkpointing as Ctrl-C does.
        #[arg(long, value_name = "N")]
        stop_after: Option<u32>,
    },
    /// Train a scene's network (learn mode: a `learn: (...)` section), writing weights.bpk, the
    /// loss history and the held-out measurement; Ctrl-C checkpoints and stops, `--resume`
    /// continues.
    Train {
        #[arg(required_unless_present = "resume", conflicts_with = "resume")]
        scene: Option<PathBuf>,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<String>,
        #[arg(long)]
        quiet: bool,
        #[arg(long)]
        force: bool,
        /// Continue the training whose output folder this is, from its checkpoint/.
        #[arg(long, value_name = "OUT")]
        resume: Option<PathBuf>,
    },
    /// Photos in, 3D faces out: finds each face (the built-in detector, or the `.pts` beside
    /// an image), fits the model to it and writes a textured OBJ (MTL + PNG), PLY, landmarks,
    /// coefficients and pose, an overlay at the photo's resolution, and a report.
    Reconstruct {
        /// Photos (PNG/JPEG), folders (one sub-folder per person: its photos share an identity) or
        /// video clips (mp4, mov, mkv, avi, webm: decoded by ffmpeg, the face tracked).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder (default: out/NAME, after the first input).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A scene to fit with instead of the built-in one (scenes/reconstruct.ron).
        #[arg(long)]
        scene: Option<PathBuf>,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<String>,
        /// Stop at the first bad input (no face, undecodable, a bad .pts) instead of skipping it.
        #[arg(long)]
        strict: bool,
        #[arg(long)]
        quiet: bool,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        shard: ShardArgs,
    },
    /// Find faces and their landmarks: per face NAME.pts (68 iBUG points) and NAME.json (box,
    /// score, keypoints, presence, the 468 FaceMesh points), in the photo's pixels.
    Detect {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// At most this many faces per image, best first.
        #[arg(long, default_value_t = 1)]
        max_faces: usize,
        /// The detector's score threshold.
        #[arg(long, default_value_t = 0.5)]
        min_score: f32,
        #[arg(long)]
        strict: bool,
    },
    /// Reconstruct every image of a folder with a trained network: mesh, pose, landmarks and
    /// overlay per image; a folder of sub-folders is read as clips / multi-view sets (one
    /// identity per sub-folder).
    Infer {
        /// weights.bpk written by `faceforge train` (its .json beside it).
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        images: PathBuf,
        /// Where the .pts landmarks are (default: beside the images); without landmarks, the
        /// whole image, centre-cropped square, is the network's input.
        #[arg(long)]
        landmarks: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// The model the network was trained for: a preset (tiny, default, bfm) or a .ffm file.
        #[arg(long, default_value = "default")]
        model: String,
        #[arg(long)]
        force: bool,
        /// Frames through the network at once (whole subjects; memory grows with it).
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Where the network runs: auto (a real GPU through wgpu if there is one), cpu (burn's
        /// flex) or gpu (wgpu, even on a CPU device).
        #[arg(long, default_value = "auto", value_parser = faceforge_learn::DeviceChoice::parse)]
        device: faceforge_learn::DeviceChoice,
        #[command(flatten)]
        shard: ShardArgs,
    },
    /// Join the folders of a sharded run (`--shard I/N`) into one: per-frame files linked in,
    /// metrics over all frames from the shards' records, the report, and run.json listing the
    /// shards, the skipped inputs and what is missing.
    Merge {
        /// Shard folders (`OUT/shard-I-of-N`), or the run's folder holding them.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The merged folder (default: the folder holding the shards).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exit 0 even when shards or subjects are missing (they are listed either way).
        #[arg(long)]
        allow_missing: bool,
    },
    /// Run the variants of an ablation sweep file and write its table (Markdown and JSON).
    Sweep {
        file: PathBuf,
        /// Override a field of every variant's scene (path=value), or `sweep.out=DIR`.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<String>,
        #[arg(long)]
        quiet: bool,
    },
    /// Measure results against ground truth (the papers' metrics) and write metrics.json,
    /// report.md and report.html. RESULTS holds per-frame NAME.obj (the model's topology) and
    /// optionally NAME.pts and NAME.json (pose), from faceforge or any method; --truth is a
    /// folder written by `faceforge synth`. (`faceforge run` on synthetic data reports by itself.)
    Eval {
        results: PathBuf,
        #[arg(long)]
        truth: PathBuf,
        /// The model the results and the truth were made with: a preset (tiny, default, bfm) or
        /// a .ffm file.
        #[arg(long, default_value = "default")]
        model: String,
        /// Where to write the report (default: the results folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the systems a scene can name, with their stage, inputs and outputs.
    Systems,
    /// Render synthetic faces with exact ground truth: PNG images, iBUG .pts landmarks and the
    /// truth (coefficients, pose, lighting, 3D landmarks) as RON.
    Synth {
        /// aflw-like, florence-like, facewarehouse-like, mvf-like or clip-like.
        preset: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 6)]
        subjects: u32,
        /// Frames per subject (0: the preset's).
        #[arg(long, default_value_t = 0)]
        frames: u32,
        #[arg(long, default_value_t = 224)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Landmark noise σ in pixels.
        #[arg(long, default_value_t = 1.5)]
        noise: f32,
        /// Probability of an occluder per frame.
        #[arg(long, default_value_t = 0.0)]
        occluders: f32,
        /// Pinhole camera with this focal length in image widths (0: weak perspective).
        #[arg(long, default_value_t = 0.0)]
        focal: f32,
        /// Model preset (tiny, default, bfm).
        #[arg(long, default_value = "default")]
        model: String,
        /// Each subject in a sub-folder of its own (`s000/f000.png`): a folder of clips or
        /// multi-view sets.
        #[arg(long)]
        per_subject: bool,
    },
    /// Benchmarks (print ratios against the native CPU twins measured in the same run).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Morphable model files.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The detector and the landmarker, ms per image at 640×480 and at the portrait's size,
    /// against the fit that follows them.
    Detect {
        #[arg(long, default_value = "examples/obama.jpg")]
        image: PathBuf,
        #[arg(long, default_value_t = 20)]
        repeats: usize,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Decode: one product over the batch against one matrix–vector product per frame.
    Decode {
        #[arg(long, default_value = "bfm")]
        preset: String,
        #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
        batch: Vec<usize>,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Append the table (with the machine and the command) to this Markdown file.
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// A whole run of a clip scene at its frame count and at a tenth of it: frames per second and
    /// peak memory.
    Run {
        #[arg(long, default_value = "scenes/clip_fit.ron")]
        scene: PathBuf,
        #[arg(long, default_value_t = 100)]
        frames: u32,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// `reconstruct CLIP.mp4` on a synthetic clip it renders and encodes (a face moving in a
    /// 640×480 frame): frames per second and each stage's share, with the landmark and temporal
    /// terms only and with the built-in census over neighbouring frames.
    Video {
        #[arg(long, default_value_t = 300)]
        frames: u32,
        #[arg(long, default_value_t = 640)]
        width: u32,
        #[arg(long, default_value_t = 480)]
        height: u32,
        /// More scene overrides for both variants (e.g. `iterations=100`).
        #[arg(long = "set")]
        overrides: Vec<String>,
        /// Only the fast clip fit (the census variant takes about 20 minutes on 2 cores).
        #[arg(long)]
        fast_only: bool,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// One learn-mode training step (a batch of the scene's frames through the network, the
    /// graph and burn's backward and Adam) per input size, against the forward pass alone, with
    /// the networks on burn's flex and (with `--gpu`) on the wgpu device.
    Train {
        #[arg(long, default_value = "scenes/pgn_train_guidance.ron")]
        scene: PathBuf,
        #[arg(long, default_value = "96,224", value_delimiter = ',')]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Also time the networks on wgpu (on whatever adapter it finds).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        gpu: bool,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// `faceforge infer` on a folder of synthetic faces: images per second, one at a time
    /// against `--batch` at a time.
    Infer {
        #[arg(long, default_value_t = 100)]
        images: u32,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// One iteration of the quickstart's PGN fit (2 frames, every loss) per model size, against
    /// the landmark-only fit.
    Fit {
        #[arg(long, default_value = "scenes/quickstart.ron")]
        scene: PathBuf,
        #[arg(long, default_value = "default,bfm", value_delimiter = ',')]
        presets: Vec<String>,
        #[arg(long, default_value_t = 10)]
        repeats: usize,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// The landmark + regulariser fit that `benches/peer/` runs in PyTorch: ms per iteration and
    /// the whole fit; `--export` also writes the peer's inputs (model arrays, frames, starts,
    /// settings) and this run's timings and loss curve.
    Peer {
        #[arg(long, default_value = "scenes/landmark_fit.ron")]
        scene: PathBuf,
        #[arg(long)]
        export: Option<PathBuf>,
        /// Scene overrides, as for `run`.
        #[arg(long = "set")]
        overrides: Vec<String>,
        /// The learn scene whose training step the peer also times (with `--export`).
        #[arg(long, default_value = "scenes/pgn_train_guidance.ron")]
        train_scene: PathBuf,
        /// Input sizes of the training step, comma-separated (none: skip it).
        #[arg(long, default_value = "96,224", value_delimiter = ',')]
        train_sizes: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// decode → project → rasterize → interpolate → sample, forward and forward + backward.
    Render {
        /// Model preset (tiny, default, bfm).
        #[arg(long, default_value = "bfm")]
        preset: String,
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Batch sizes, comma-separated.
        #[arg(long, default_value = "1,16", value_delimiter = ',')]
        batch: Vec<usize>,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Also time the wgpu runtime (on whatever adapter it finds).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        wgpu: bool,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Generate the procedural model and write it as a native .ffm file.
    Export {
        out: PathBuf,
        /// tiny (1,833 vertices), default (7,257) or bfm (28,881 vertices, 57,472 triangles):
        /// subdivision levels 1–3 of MediaPipe's canonical face.
        #[arg(long, default_value = "default")]
        preset: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = ModelSpec::default().n_id)]
        n_id: usize,
        #[arg(long, default_value_t = ModelSpec::default().n_exp)]
        n_exp: usize,
        #[arg(long, default_value_t = ModelSpec::default().n_tex)]
        n_tex: usize,
    },
    /// Check a model file and print what it holds.
    Info { file: PathBuf },
    /// Write a model's mean face (with its mean albedo) as OBJ.
    Obj { file: PathBuf, out: PathBuf },
    /// Draw a model's mean face from the front, at 45° and at 90°, as clay and in its mean albedo (PNG).
    Views { file: PathBuf, out: PathBuf },
    /// Convert a model you own into a native .ffm: bfm2009 (01_MorphableModel.mat), bfm2017
    /// (model2017-1_*.h5) or deep3d (Deep3DFaceRecon's BFM_model_front.mat).
    Import {
        /// bfm2009, bfm2017 or deep3d.
        layout: String,
        file: PathBuf,
        out: PathBuf,
        /// 68 landmark vertex indices (whitespace or commas); required for bfm2009 and bfm2017.
        #[arg(long)]
        landmarks: Option<PathBuf>,
        /// The landmark indices count from 1 (MATLAB's habit).
        #[arg(long)]
        one_based: bool,
        /// Keep at most this many identity / expression / albedo components.
        #[arg(long)]
        n_id: Option<usize>,
        #[arg(long)]
        n_exp: Option<usize>,
        #[arg(long)]
        n_tex: Option<usize>,
    },
}

/// The model named on the command line: a .ffm file or a preset.
fn model_arg(name: &str) -> anyhow::Result<MorphableModel> {
    if name.ends_with(".ffm") || std::path::Path::new(name).is_file() {
        return Ok(MorphableModel::open(std::path::Path::new(name))?);
    }
    let preset = Preset::parse(name).with_context(|| format!("unknown model `{name}`: a .ffm file or a preset (tiny, default, bfm)"))?;
    Ok(MorphableModel::generate(&ModelSpec { preset, ..ModelSpec::default() }))
}

/// The model named on the command line, as a scene's model source.
fn model_source(name: &str) -> anyhow::Result<faceforge::scene::ModelSource> {
    if name.ends_with(".ffm") || std::path::Path::new(name).is_file() {
        return Ok(faceforge::scene::ModelSource::File(PathBuf::from(name)));
    }
    let preset = Preset::parse(name).with_context(|| format!("unknown model `{name}`: a .ffm file or a preset (tiny, default, bfm)"))?;
    Ok(faceforge::scene::ModelSource::Procedural(ModelSpec { preset, ..ModelSpec::default() }))
}

/// Per-frame errors against the ground truth, and their means.
fn metrics_text(m: &faceforge::eval::metrics::RunMetrics) -> String {
    let mut s = String::from("frame        yaw/pitch/roll fitted (true), °          pose err °  landmarks px  per-vertex mm  depth mm\n");
    let ypr = |a: Option<[f32; 3]>| a.map_or("-".to_string(), |a| format!("{:6.1} {:5.1} {:5.1}", a[0], a[1], a[2]));
    for f in &m.frames {
        s.push_str(&format!(
            "{:<12} {} ({})  {:>9}  {:>12}  {:>13.3}  {:>8.3}\n",
            f.frame,
            ypr(f.pose_ypr_deg),
            ypr(f.true_ypr_deg),
            f.pose_deg.map_or("-".into(), |v| format!("{v:.2}")),
            f.landmarks_px.map_or("-".into(), |v| format!("{v:.2}")),
            f.per_vertex_mm,
            f.depth_mm
        ));
    }
    s.push_str(&format!(
        "mean: pose {:.2}°, landmarks {:.2} px, per-vertex {:.3} mm (mean face {:.3} mm), depth {:.3} mm (mean face {:.3} mm)\n",
        m.pose_deg.mean, m.landmarks_px.mean, m.per_vertex_mm.mean, m.mean_face_per_vertex_mm.mean, m.depth_mm.mean, m.mean_face_depth_mm.mean
    ));
    s.push_str(&format!(
        "papers' metrics: 2D NME {}% (mean of yaw-bin means), dense 3D NME {:.3}% (mean face {:.3}%), point-to-plane RMSE {:.3} mm after ICP on the 95 mm crop (mean face {:.3} mm)\n",
        m.nme_2d_mean_of_bins.map_or("-".into(), |v| format!("{v:.3}")),
        m.nme_3d.mean,
        m.mean_face_nme_3d.mean,
        m.scan_rmse_mm.mean,
        m.mean_face_scan_rmse_mm.mean
    ));
    s
}

/// Prints a benchmark's table and, when asked, appends it to a Markdown file with the date, the
/// machine and the command that made it.
fn report_bench(title: &str, table: &str, record: Option<&std::path::Path>) -> anyhow::Result<()> {
    println!("{title}\n\n{table}");
    if let Some(path) = record {
        let command: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--record") && Some(a.as_str()) != path.to_str()).collect();
        let stamp = std::process::Command::new("date").arg("+%Y-%m-%d").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
        let entry = format!("\n### {title}\n\n{stamp}, {}; `cargo run --release -- {}`\n\n{table}", faceforge::bench::machine(), command.join(" "));
        let mut text = std::fs::read_to_string(path).unwrap_or_default();
        text.push_str(&entry);
        faceforge_model::atomic_write(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        println!("appended to {}", path.display());
    }
    Ok(())
}

fn load_scene(path: &std::path::Path, overrides: &[String]) -> anyhow::Result<LoadedScene> {
    let mut loaded = LoadedScene::load(path)?;
    loaded.apply_overrides(overrides)?;
    Ok(loaded)
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { scene, overrides, graph } if faceforge::scene::sweep::is_sweep(&scene) => {
            let variants = faceforge::scene::sweep::check(&scene, &overrides)?;
            println!("{}: ok — {} variants", scene.display(), variants.len());
            for (name, plan) in variants {
                println!("{name}: {}", plan.names().join(" → "));
                print!("{}", if graph { faceforge::scene::graph::describe(&plan) } else { faceforge::scene::graph::notes(&plan) });
            }
        }
        Command::Check { scene, overrides, graph } => {
            let loaded = load_scene(&scene, &overrides)?;
            let plan = plan(&loaded)?;
            faceforge::scene::graph::build_schedule(&loaded, &plan)?;
            println!("{}: ok — {}", scene.display(), plan.names().join(" → "));
            print!("{}", if graph { faceforge::scene::graph::describe(&plan) } else { faceforge::scene::graph::notes(&plan) });
        }
        Command::Run { scene, mut overrides, quiet, force, resume, strict, shard, stop_after } => {
            if strict {
                overrides.push("data.Folder.strict=true".into());
            }
            faceforge::run::interrupt_on_ctrl_c();
            let options = faceforge::run::RunOptions { progress: !quiet, overwrite: force, shard: shard.resolve()?, stop_after, ..Default::default() };
            let summary = match (resume, scene) {
                (Some(dir), _) => faceforge::run::resume(&dir, &overrides, &options)?,
                (None, Some(scene)) => faceforge::run::run_with(&load_scene(&scene, &overrides)?, &options)?,
                (None, None) => unreachable!("clap requires a scene or --resume"),
            };
            println!(
                "{}: {} frames × {} iterations in {:.2} s on {}, peak memory {}; wrote {} files to {}",
                summary.scene,
                summary.frames,
                summary.iterations,
                summary.seconds,
                summary.backend,
                faceforge::run::megabytes(summary.peak_memory_mb),
                summary.files.len() + 1,
                summary.out_dir.display()
            );
            if !summary.skipped.is_empty() {
                println!("skipped {} inputs:", summary.skipped.len());
                for s in &summary.skipped {
                    println!("  {}: {}", s.file.display(), s.reason);
                }
            }
            if let Some(m) = &summary.metrics {
                print!("{}", metrics_text(m));
            }
            if !summary.losses.is_empty() {
                let terms: Vec<String> = summary.losses.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                println!("final loss {:.4}: {}", summary.losses.values().sum::<f32>(), terms.join(", "));
            }
            println!("report: {}", summary.out_dir.join("report.html").display());
        }
        Command::Train { scene, overrides, quiet, force, resume } => {
            faceforge::run::interrupt_on_ctrl_c();
            let options = faceforge::run::RunOptions { progress: !quiet, overwrite: force, ..Default::default() };
            let summary = match (resume, scene) {
                (Some(dir), _) => faceforge::run::train::resume(&dir, &overrides, &options)?,
                (None, Some(scene)) => faceforge::run::train::train(&load_scene(&scene, &overrides)?, &options, false)?,
                (None, None) => unreachable!("clap requires a scene or --resume"),
            };
            print!("{}", faceforge::run::train::summary_text(&summary));
        }
        Command::Reconstruct { inputs, out, scene, overrides, strict, quiet, force, shard } => {
            faceforge::run::interrupt_on_ctrl_c();
            let run = faceforge::run::RunOptions { progress: !quiet, overwrite: force, shard: shard.resolve()?, ..Default::default() };
            let summary = faceforge::run::reconstruct::reconstruct(&faceforge::run::reconstruct::ReconstructOptions { inputs, out, scene, overrides, strict, run })?;
            print!("{}", faceforge::run::reconstruct::summary_text(&summary));
        }
        Command::Detect { inputs, out, max_faces, min_score, strict } => {
            let options = faceforge_detect::DetectOptions { max_faces: max_faces.max(1), min_score, ..Default::default() };
            let summary = faceforge::run::detect::detect(&inputs, &out, &options, strict)?;
            println!("{} faces in {} images in {:.2} s; wrote {} files to {}", summary.faces, summary.images, summary.seconds, summary.files.len(), out.display());
            for s in &summary.skipped {
                println!("  skipped {}: {}", s.file.display(), s.reason);
            }
        }
        Command::Infer { weights, images, landmarks, out, model, force, batch, device, shard } => {
            let model = model_source(&model)?;
            let result = faceforge::run::infer::infer(&model, &weights, &images, landmarks.as_deref(), &out, force, batch, device, shard.resolve()?)?;
            println!("{} images reconstructed ({} subjects) in {:.2} s, {:.1} images/s; {} skipped; wrote {}", result.frames, result.subjects, result.seconds, result.frames as f64 / result.seconds.max(1e-9), result.skipped.len(), out.display());
            for s in &result.skipped {
                println!("  skipped {}: {}", s.file.display(), s.reason);
            }
        }
        Command::Merge { dirs, out, allow_missing } => {
            let summary = faceforge::run::merge::merge(&dirs, out.as_deref())?;
            let merged = summary.merged.as_ref().expect("a merge says what it merged");
            println!("merged {} into {}: {} frames, {} inputs skipped", merged.describe(), summary.out_dir.display(), summary.frames, summary.skipped.len());
            if let Some(m) = &summary.metrics {
                print!("{}", metrics_text(m));
            }
            println!("report: {}", summary.out_dir.join("report.html").display());
            if !merged.complete() && !allow_missing {
                let missing: Vec<String> = merged.missing_shards.iter().map(u32::to_string).collect();
                anyhow::bail!(
                    "the merge is incomplete ({}): run the missing shards (or start the unfinished ones again: they go on where they stopped) and merge again, or pass --allow-missing",
                    if missing.is_empty() { format!("{} subjects unfinished", merged.missing_subjects.len()) } else { format!("shards {} missing", missing.join(", ")) }
                );
            }
        }
        Command::Sweep { file, overrides, quiet } => {
            let table = faceforge::scene::sweep::sweep(&file, &overrides, !quiet)?;
            print!("{}", faceforge::scene::sweep::markdown(&table));
            println!("report: {}", table.out.join("report.html").display());
        }
        Command::Eval { results, truth, model, out } => {
            let model = model_arg(&model)?;
            let out = out.unwrap_or_else(|| results.clone());
            let evaluation = faceforge::eval::evaluate(&model, &results, &truth, &out)?;
            print!("{}", metrics_text(&evaluation.metrics));
            if !evaluation.missing.is_empty() {
                println!("{} truth frames have no result: {}", evaluation.missing.len(), evaluation.missing.join(", "));
            }
            println!("wrote {}", evaluation.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
        }
        Command::Systems => {
            for e in faceforge::scene::graph::registry() {
                let names = |d: &[faceforge_systems::DataName]| d.iter().map(|d| d.short()).collect::<Vec<_>>().join(", ");
                let adjoint = e.adjoint.map_or(String::new(), |a| format!(" (adjoint: {a})"));
                println!("{:<30} {:<26} reads {:<36} writes {:<38} {}{adjoint}", e.name, format!("{:?}", e.stage), names(&e.reads), names(&e.writes), e.summary);
            }
        }
        Command::Synth { preset, out, subjects, frames, size, seed, noise, occluders, focal, model, per_subject } => {
            let preset = faceforge::io::synth::SynthPreset::parse(&preset)
                .with_context(|| format!("unknown preset `{preset}`; presets: aflw-like, florence-like, facewarehouse-like, mvf-like, clip-like"))?;
            let model_preset = Preset::parse(&model).with_context(|| format!("unknown model preset `{model}`; presets: tiny, default, bfm"))?;
            let model = MorphableModel::generate(&ModelSpec { preset: model_preset, ..ModelSpec::default() });
            let spec = faceforge::io::synth::SynthSpec { preset, subjects, frames, size, seed, landmark_noise: noise, occluders, yaws: Vec::new(), focal, changing_lighting: false, dense_landmarks: false, motion: 1.0 };
            let frames = faceforge::io::synth::generate(&model, &faceforge_kernels::Backend::Cpu, &spec);
            let write = if per_subject { faceforge::io::synth::write_per_subject } else { faceforge::io::synth::write };
            let files = write(&out, &frames).with_context(|| format!("writing to {}", out.display()))?;
            println!("wrote {} frames ({files} files) to {}", frames.len(), out.display());
        }
        Command::Bench { command: BenchCommand::Detect { image, repeats, record } } => {
            let title = format!("the detector and the landmarker (tract, native CPU) on {}, ms per image, {repeats} repeats", image.display());
            let table = faceforge::bench::rows_table("ms/image", &faceforge::bench::detect(&image, repeats.max(1))?);
            report_bench(&title, &table, record.as_deref())?;
        }
        Command::Bench { command: BenchCommand::Decode { preset, batch, repeats, record } } => {
            let preset = Preset::parse(&preset).with_context(|| format!("unknown preset `{preset}`; presets: tiny, default, bfm"))?;
            let model = MorphableModel::generate(&ModelSpec { preset, ..ModelSpec::default() });
            let title = format!("decode, model {} ({} vertices, {} + {} components), native CPU, ms per frame, {repeats} repeats", preset.name(), model.n_vertices(), model.n_id(), model.n_exp());
            let batch: Vec<usize> = batch.into_iter().filter(|&b| b > 0).collect();
            let table = faceforge::bench::rows_table("ms/frame", &faceforge::bench::decode(&model, &batch, repeats.max(1)));
            report_bench(&title, &table, record.as_deref())?;
        }
        Command::Bench { command: BenchCommand::Run { scene, frames, record } } => {
            let loaded = load_scene(&scene, &[])?;
            let title = format!("a whole run of {} (native CPU unless the scene says otherwise), ms per frame", scene.display());
            let table = faceforge::bench::rows_table("ms/frame", &faceforge::bench::run_clip(&loaded, frames)?);
            report_bench(&title, &table, record.as_deref())?;
        }
        Command::Bench { command: BenchCommand::Train { scene, sizes, repeats, gpu, record } } => {
            let loaded = load_scene(&scene, &[])?;
            let devices: &[faceforge_learn::DeviceChoice] = if gpu { &[faceforge_learn::DeviceChoice::Cpu, faceforge_learn::DeviceChoice::Gpu] } else { &[faceforge_learn::DeviceChoice::Cpu] };
            let title = format!("one training step of {}, ms per step, {repeats} repeats", scene.display());
            let table = faceforge::bench::rows_table("ms/step", &faceforge::bench::train_step(&loaded, &sizes, devices, repeats.max(1))?);
            report_bench(&title, &table, record.as_deref())?;
        }
        Command::Bench { command: BenchCommand::Video { frames, width, height, overrides, fast_only, record } } => {
            let dir = faceforge::bench::tempfile_dir()?;
            let clip = faceforge::bench::video::make_clip(&dir, frames, width, height)?;
            let variants = &faceforge::bench::video::VARIANTS[..if fast_only { 1 } else { 2 }];
            let runs = faceforge::bench::video::run(&clip, &dir, variants, &overrides);
            std::fs::remove_dir_all(&dir).ok();
            let runs = runs?;
            let title = format!("reconstruct CLIP.mp4 ({frames} frames, {width}×{height}{}), frames per second and each stage's share", if overrides.is_empty() { String::new() } else { format!(" with {}", overrides.join(" ")) });
            report_bench(&title, &faceforge::bench::video::table(&runs), record.as_deref())?;
        }
        Command::Bench { command: BenchCommand::Infer { images, size, batch, record } } => {
            let spec = faceforge_learn::NetworkSpec { input: size, ..Default::default() };
            let title = format!("faceforge infer on {images} synthetic {size}-px faces (network width {}, `default` model, OBJ + texture + report), ms per image", spec.width);
            let table = faceforge::bench::rows_table("ms/image", &faceforge::bench::infer(&spec, images, batch)?);
            report_bench(&title, &table, record.as_deref())?;
        }
        Command::Bench { command: BenchCommand::Fit { scene, presets, repeats, record } } => {
            let loaded = load_scene(&scene, &[])?;
            let presets: Vec<&str> = presets.iter().map(String::as_str).collect();
            let title = format!("one fit iteration of {} (native CPU), ms per iteration, {repeats} repeats", scene.display());
            let table = faceforge::bench::rows_table("ms/iteration", &faceforge::bench::fit(&loaded, &presets, repeats.max(1))?);
            report_bench(&title, &table, record.as_deref())?;
        }
        Command::Bench { command: BenchCommand::Peer { scene, export, overrides, train_scene, train_sizes, repeats } } => {
            let loaded = load_scene(&scene, &overrides)?;
            for (name, t) in faceforge::bench::peer::landmark_fit(&loaded, export.as_deref())? {
                println!(
                    "{} ({name}): {} frames × {} iterations in {:.2} s, ms per iteration {:.3} / {:.3} / {:.3} (min / median / max), final loss {:.4}",
                    scene.display(), t.frames, t.iterations, t.seconds, t.ms[0], t.ms[1], t.ms[2], t.losses.last().copied().unwrap_or(f32::NAN)
                );
            }
            if let Some(dir) = export {
                let train = load_scene(&train_scene, &[])?;
                for size in train_sizes {
                    let ms = faceforge::bench::peer::training_step(&train, size, repeats.max(1), &dir)?;
                    println!("{} at {size}²: ms per training step {:.1} / {:.1} / {:.1} (min / median / max)", train_scene.display(), ms[0], ms[1], ms[2]);
                }
                println!("peer inputs and this run's numbers: {}", dir.display());
            }
        }
        Command::Bench { command: BenchCommand::Render { preset, size, batch, repeats, wgpu } } => {
            let preset = Preset::parse(&preset).with_context(|| format!("unknown preset `{preset}`; presets: tiny, default, bfm"))?;
            let model = std::sync::Arc::new(MorphableModel::generate(&ModelSpec { preset, ..ModelSpec::default() }));
            let mut backends = vec![faceforge_kernels::Backend::Cpu];
            if wgpu {
                backends.push(faceforge_kernels::Backend::wgpu()?);
            }
            println!(
                "render chain at {size}×{size}, model {} ({} vertices, {} triangles), {repeats} repeats",
                preset.name(),
                model.n_vertices(),
                model.n_triangles()
            );
            let timings = faceforge::bench::render(&model, &backends, &batch, size, repeats.max(1));
            print!("{}", faceforge::bench::table(&timings));
        }
        Command::Model { command } => match command {
            ModelCommand::Export { out, preset, seed, n_id, n_exp, n_tex } => {
                let preset = Preset::parse(&preset).with_context(|| format!("unknown preset `{preset}`; presets: tiny, default, bfm"))?;
                let model = MorphableModel::generate(&ModelSpec { preset, seed, n_id, n_exp, n_tex });
                model.save(&out)?;
                println!("wrote {} ({} vertices, {} triangles, {} bytes)", out.display(), model.n_vertices(), model.n_triangles(), model.bytes().len());
            }
            ModelCommand::Info { file } => {
                let model = MorphableModel::open(&file)?;
                let h = model.header();
                println!("{}: faceforge model, format version {}", file.display(), h.version);
                println!("  preset {}, seed {}", h.preset, h.seed);
                println!("  {} vertices, {} triangles, {} landmarks", h.dims.vertices, h.dims.triangles, h.dims.landmarks);
                println!("  components: {} identity, {} expression, {} albedo", h.dims.id, h.dims.exp, h.dims.albedo);
                println!("  {} bytes, every array checksum verified", model.bytes().len());
            }
            ModelCommand::Import { layout, file, out, landmarks, one_based, n_id, n_exp, n_tex } => {
                let layout = faceforge::io::import::Layout::parse(&layout).with_context(|| format!("unknown layout `{layout}`; layouts: bfm2009, bfm2017, deep3d"))?;
                let name = file.display().to_string();
                let bytes = std::fs::read(&file).with_context(|| format!("reading {name}"))?;
                let landmarks = match landmarks {
                    Some(path) => {
                        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                        Some(faceforge::io::import::read_landmarks(&path.display().to_string(), &text, one_based)?)
                    }
                    None => None,
                };
                let options = faceforge::io::import::ImportOptions { landmarks, n_id, n_exp, n_tex };
                let model_arrays = match layout {
                    faceforge::io::import::Layout::Bfm2017 => faceforge::io::import::import_hdf5(&name, &faceforge::io::hdf5::parse(&name, &bytes)?, &options)?,
                    _ => faceforge::io::import::import(layout, &name, &faceforge::io::mat::parse(&name, &bytes)?, &options)?,
                };
                let bytes = faceforge_model::file::encode(&model_arrays);
                let model = MorphableModel::from_bytes(&bytes, &out.display().to_string())?;
                model.save(&out)?;
                println!(
                    "wrote {} ({} vertices, {} triangles; {} identity / {} expression / {} albedo components)",
                    out.display(),
                    model.n_vertices(),
                    model.n_triangles(),
                    model.n_id(),
                    model.n_exp(),
                    model.n_albedo()
                );
            }
            ModelCommand::Obj { file, out } => {
                let model = MorphableModel::open(&file)?;
                write_obj(&out, &model, &MeshView { positions: model.mean_shape(), colors: Some(model.mean_albedo()), material: None })
                    .with_context(|| format!("writing {}", out.display()))?;
                println!("wrote {}", out.display());
            }
            ModelCommand::Views { file, out } => {
                let model = MorphableModel::open(&file)?;
                let png = faceforge::report::views::turned_png(&model, model.mean_shape(), Some(model.mean_albedo()), 320);
                faceforge_model::atomic_write(&out, &png).with_context(|| format!("writing {}", out.display()))?;
                println!("wrote {}", out.display());
            }
        },
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match execute(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<faceforge::run::Interrupted>() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
