//! Any text given as a scene file (and as a sweep file) is an error or a scene, never a panic;
//! a scene that loads also survives `--set` overrides and graph checking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mut scene) = faceforge::LoadedScene::from_str(text, "fuzz.ron") {
        if let Ok(plan) = faceforge::scene::graph::plan(&scene) {
            let _ = faceforge::scene::graph::build_schedule(&scene, &plan);
        }
        let _ = scene.apply_overrides(&["iterations=3".to_string(), "data.Folder.path=\"x\"".to_string()]);
    }
});
