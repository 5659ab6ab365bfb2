//! `boha devices [--json]`

use boha::gpu::tuning;
use boha::gpu::{list_devices, DeviceClass, Profile};
use boha::{Error, Result};

pub fn run(json: bool) -> Result<()> {
    let devices = list_devices();
    if json {
        let s =
            serde_json::to_string_pretty(&devices).map_err(|e| Error::Invalid(e.to_string()))?;
        println!("{s}");
        return Ok(());
    }
    if devices.is_empty() {
        return Err(Error::no_adapter_found());
    }
    for d in &devices {
        println!(
            "[{}] {} ({}, {})",
            d.index, d.name, d.backend, d.device_type
        );
        println!("    driver: {} {}", d.driver, d.driver_info);
        println!(
            "    max buffer {} B, max storage binding {} B, workgroup storage {} B, invocations {}",
            d.max_buffer_size,
            d.max_storage_buffer_binding_size,
            d.max_compute_workgroup_storage_size,
            d.max_compute_invocations_per_workgroup
        );
        println!(
            "    timestamps: {}, shader-f16: {}, subgroups: {} (sizes {}..={}), cooperative matrix: {}",
            d.timestamp_query,
            d.shader_f16,
            d.subgroups,
            d.subgroup_min_size,
            d.subgroup_max_size,
            d.cooperative_matrix
        );
        let p = Profile::for_device(d, None);
        println!(
            "    profile: {} (family {}, GEMM tile {})",
            DeviceClass::of(d).name(),
            p.family.name(),
            p.gemm_tile.name()
        );
        match tuning::file_for(d).filter(|f| f.is_file()) {
            Some(f) => println!("    tuned: {}", f.display()),
            None => println!("    tuned: no (run `boha tune [--model PATH]`)"),
        }
    }
    Ok(())
}
