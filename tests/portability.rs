//! Every shader in `boha::shaders::all()` (each template with each kind and weights snippet) is parsed and validated by naga and translated to
//! SPIR-V, MSL, HLSL and GLSL (per compute entry point), so that a shader that Vulkan,
//! Metal, DX12 or GL would reject fails here, on a machine that has none of them.
//!
//! Override constants are resolved first, as wgpu does when it creates a pipeline: once
//! with their defaults, and once with every bool override set to true (so both sides of
//! `if (TRANS_A)` and the like are translated). Needs no GPU.

use naga::back::PipelineConstants;
use naga::{Module, Scalar, ScalarKind, ShaderStage, TypeInner};

/// The override values to try: defaults (1 for overrides without one), then all bools true.
fn constant_sets(module: &Module) -> Vec<PipelineConstants> {
    let mut defaults = PipelineConstants::default();
    let mut flipped = PipelineConstants::default();
    let mut has_bool = false;
    for (_, o) in module.overrides.iter() {
        let Some(name) = o.name.clone() else { continue };
        if o.init.is_none() {
            defaults.insert(name.clone(), 1.0);
        }
        let is_bool = matches!(
            module.types[o.ty].inner,
            TypeInner::Scalar(Scalar {
                kind: ScalarKind::Bool,
                ..
            })
        );
        if is_bool {
            has_bool = true;
            flipped.insert(name, 1.0);
        } else if o.init.is_none() {
            flipped.insert(name, 1.0);
        }
    }
    if has_bool {
        vec![defaults, flipped]
    } else {
        vec![defaults]
    }
}

/// Translates one override-resolved module to every back end; errors name the back end.
fn translate(module: &Module, info: &naga::valid::ModuleInfo) -> Result<(), String> {
    naga::back::spv::write_vec(module, info, &naga::back::spv::Options::default(), None)
        .map_err(|e| format!("SPIR-V: {e}"))?;

    let msl_opts = naga::back::msl::Options {
        lang_version: (2, 4),
        ..Default::default()
    };
    naga::back::msl::write_string(module, info, &msl_opts, &Default::default())
        .map_err(|e| format!("MSL: {e}"))?;

    let hlsl_opts = naga::back::hlsl::Options {
        shader_model: naga::back::hlsl::ShaderModel::V6_0,
        ..Default::default()
    };
    let hlsl_pipeline = naga::back::hlsl::PipelineOptions::default();
    let mut hlsl = String::new();
    naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_opts, &hlsl_pipeline)
        .write(module, info, None)
        .map_err(|e| format!("HLSL: {e}"))?;

    for ep in module
        .entry_points
        .iter()
        .filter(|e| e.stage == ShaderStage::Compute)
    {
        let options = naga::back::glsl::Options::default();
        let pipeline = naga::back::glsl::PipelineOptions {
            shader_stage: ShaderStage::Compute,
            entry_point: ep.name.clone(),
            multiview: None,
        };
        let mut glsl = String::new();
        naga::back::glsl::Writer::new(
            &mut glsl,
            module,
            info,
            &options,
            &pipeline,
            naga::proc::BoundsCheckPolicies::default(),
        )
        .and_then(|mut w| w.write())
        .map_err(|e| format!("GLSL ({}): {e}", ep.name))?;
    }
    Ok(())
}

#[test]
fn every_shader_validates_and_translates_to_all_backends() {
    let mut failures = Vec::new();
    for shader in &boha::shaders::all() {
        let (module, info) = match boha::gpu::validate_wgsl(shader) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: naga validation: {e}", shader.name));
                continue;
            }
        };
        assert!(
            !module.entry_points.is_empty(),
            "{} has no entry point",
            shader.name
        );
        for constants in constant_sets(&module) {
            let resolved =
                naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants);
            let (m, i) = match resolved {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{}: overrides {constants:?}: {e}", shader.name));
                    continue;
                }
            };
            if let Err(e) = translate(&m, &i) {
                failures.push(format!("{} (overrides {constants:?}): {e}", shader.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "shaders that do not port:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_shader_list_is_complete() {
    // Every .wgsl file in shaders/ and shaders/kinds/ must be registered, or the test
    // above would skip it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let known: Vec<&str> = boha::shaders::ALL
        .iter()
        .chain(boha::shaders::TEMPLATES)
        .chain(boha::shaders::WEIGHT_TEMPLATES)
        .chain(boha::shaders::KIND_SNIPPETS)
        .chain(boha::shaders::WEIGHT_SNIPPETS)
        .map(|s| s.name)
        .collect();
    let mut missing = Vec::new();
    for (dir, prefix) in [
        (root.clone(), ""),
        (root.join("kinds"), "kinds/"),
        (root.join("weights"), "weights/"),
    ] {
        for entry in std::fs::read_dir(&dir).expect("shader folder exists") {
            let path = entry.expect("readable entry").path();
            if path.extension().is_some_and(|e| e == "wgsl") {
                let stem = path.file_stem().unwrap().to_string_lossy();
                let name = format!("{prefix}{stem}");
                if !known.contains(&name.as_str()) {
                    missing.push(name);
                }
            }
        }
    }
    assert!(missing.is_empty(), "shaders not registered: {missing:?}");
}
