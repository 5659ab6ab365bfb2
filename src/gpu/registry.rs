//! Kernel registry: WGSL modules compiled once, pipelines created once and cached by
//! shader, entry point and override constants.
//!
//! Bind-group layouts come from naga's reflection of each entry point: only the bindings
//! an entry point really uses are in its layout, so one shader file can hold several
//! entry points that use different subsets of its bindings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::context::Gpu;
use crate::error::{Error, Result};
use crate::shaders::Shader;

/// Shaders compiled without naga's runtime bounds checks: every index they form is in
/// bounds by construction (loads past a matrix's edge are skipped, not clamped, and the
/// ops only dispatch them over views that hold what they address), so the checks would
/// only cost instructions in their inner loops.
const TRUSTED: &[&str] = &[crate::shaders::GEMM_TIER.name];

/// The bindings through which a weights snippet reads a frozen weight (see
/// [`crate::shaders::weights_snippet`]): the only ones a non-f32 tensor may be bound to.
const WEIGHT_BINDINGS: &[&str] = &["wq", "wq4"];

/// A kernel: an entry point of a shader, with values for its `override` constants.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, f64)>,
}

impl Kernel {
    /// Entry point `entry` of `shader`, with the shader's default constants.
    pub fn new(shader: Shader, entry: &'static str) -> Kernel {
        Kernel {
            shader,
            entry,
            constants: Vec::new(),
        }
    }

    /// Sets an `override` constant (cached as a separate pipeline).
    pub fn with(mut self, name: &'static str, value: f64) -> Kernel {
        self.constants.push((name, value));
        self
    }

    /// The dtype its weights snippet reads frozen weights as (f32 without one).
    pub(crate) fn weights_dtype(&self) -> crate::gpu::DType {
        crate::gpu::DType::ALL
            .iter()
            .copied()
            .find(|&d| {
                let snippet = crate::shaders::weights_snippet(d).name;
                self.shader.name.split('+').any(|part| part == snippet)
            })
            .unwrap_or(crate::gpu::DType::F32)
    }

    fn key(&self) -> String {
        format!("{}:{}:{:?}", self.shader.name, self.entry, self.constants)
    }
}

/// How an entry point uses one binding of group 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BindingKind {
    Uniform,
    StorageRead,
    StorageReadWrite,
}

/// A pipeline with the bindings its layout holds.
#[derive(Debug)]
pub(crate) struct CachedPipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) bindings: Vec<(u32, BindingKind)>,
    /// The bindings of `bindings` that read a frozen weight in the shader's weights dtype.
    pub(crate) weight_bindings: Vec<u32>,
}

/// Compiled modules and pipelines of one device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, Arc<ParsedModule>>>,
    pipelines: Mutex<HashMap<String, Arc<CachedPipeline>>>,
}

struct ParsedModule {
    wgpu_module: wgpu::ShaderModule,
    module: naga::Module,
    info: naga::valid::ModuleInfo,
}

/// Parses and validates WGSL with naga, reporting errors as one line naming the shader.
pub fn validate_wgsl(shader: &Shader) -> Result<(naga::Module, naga::valid::ModuleInfo)> {
    let module = naga::front::wgsl::parse_str(shader.source).map_err(|e| Error::Shader {
        shader: shader.name.to_string(),
        message: super::context::one_line(&e.emit_to_string(shader.source)),
    })?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| Error::Shader {
        shader: shader.name.to_string(),
        message: super::context::one_line(&e.emit_to_string(shader.source)),
    })?;
    Ok((module, info))
}

/// The group-0 bindings that entry point `entry` of `module` uses.
fn used_bindings(
    shader: &Shader,
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
) -> Result<Vec<(u32, BindingKind)>> {
    let idx = module
        .entry_points
        .iter()
        .position(|e| e.name == entry)
        .ok_or_else(|| Error::Shader {
            shader: shader.name.to_string(),
            message: format!("no entry point '{entry}'"),
        })?;
    let ep_info = info.get_entry_point(idx);
    let mut out = Vec::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        if ep_info[handle].is_empty() {
            continue;
        }
        if binding.group != 0 {
            return Err(Error::Shader {
                shader: shader.name.to_string(),
                message: "only bind group 0 is supported".into(),
            });
        }
        let kind = match var.space {
            naga::AddressSpace::Uniform => BindingKind::Uniform,
            naga::AddressSpace::Storage { access } => {
                if access.contains(naga::StorageAccess::STORE) {
                    BindingKind::StorageReadWrite
                } else {
                    BindingKind::StorageRead
                }
            }
            _ => continue,
        };
        out.push((binding.binding, kind));
    }
    out.sort_by_key(|b| b.0);
    Ok(out)
}

impl Gpu {
    fn module(&self, shader: &Shader) -> Result<Arc<ParsedModule>> {
        let mut modules = self
            .pipelines
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(shader.name) {
            return Ok(m.clone());
        }
        let (module, info) = validate_wgsl(shader)?;
        let wgpu_module = self.scoped(&format!("compiling shader {}", shader.name), || {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
            };
            if TRUSTED.contains(&crate::shaders::base_name(shader)) {
                let checks = wgpu::ShaderRuntimeChecks {
                    bounds_checks: false,
                    ..wgpu::ShaderRuntimeChecks::checked()
                };
                // SAFETY: the shaders in TRUSTED index only inside their bindings and
                // workgroup arrays (see TRUSTED); the other runtime checks stay on.
                unsafe { self.device.create_shader_module_trusted(desc, checks) }
            } else {
                self.device.create_shader_module(desc)
            }
        })?;
        let parsed = Arc::new(ParsedModule {
            wgpu_module,
            module,
            info,
        });
        modules.insert(shader.name, parsed.clone());
        Ok(parsed)
    }

    /// The cached pipeline for `kernel`, creating it on first use.
    pub(crate) fn pipeline(&self, kernel: &Kernel) -> Result<Arc<CachedPipeline>> {
        let key = kernel.key();
        if let Some(p) = self
            .pipelines
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let parsed = self.module(&kernel.shader)?;
        let bindings = used_bindings(&kernel.shader, &parsed.module, &parsed.info, kernel.entry)?;
        let weight_bindings = parsed
            .module
            .global_variables
            .iter()
            .filter(|(_, v)| {
                v.name
                    .as_deref()
                    .is_some_and(|n| WEIGHT_BINDINGS.contains(&n))
            })
            .filter_map(|(_, v)| v.binding.as_ref().map(|b| b.binding))
            .collect();
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|&(binding, kind)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match kind {
                    BindingKind::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    BindingKind::StorageRead | BindingKind::StorageReadWrite => {
                        wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage {
                                read_only: kind == BindingKind::StorageRead,
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        }
                    }
                },
                count: None,
            })
            .collect();
        let constants = kernel.constants.clone();
        let context = format!("creating pipeline {}", kernel.key());
        let (pipeline, layout) = self.scoped(&context, || {
            let layout = self
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(kernel.entry),
                    entries: &entries,
                });
            let pl = self
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(kernel.entry),
                    bind_group_layouts: &[Some(&layout)],
                    immediate_size: 0,
                });
            let pipeline = self
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.entry),
                    layout: Some(&pl),
                    module: &parsed.wgpu_module,
                    entry_point: Some(kernel.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        // Kernels initialise the workgroup memory they read.
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                });
            (pipeline, layout)
        })?;
        let cached = Arc::new(CachedPipeline {
            pipeline,
            layout,
            bindings,
            weight_bindings,
        });
        self.pipelines
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, cached.clone());
        Ok(cached)
    }
}
