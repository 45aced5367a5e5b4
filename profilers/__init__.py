"""Device profilers: measured (CPU, CUDA) and simulated (NPU, CIM) backends, LUT building and LUT-sums."""

from profilers._base import Backend, Cost, DeviceSpec, SimulatorError, UnmappableLayerError
from profilers._devices import (
    LOCAL_CPU,
    backend_class,
    backend_for,
    backend_names,
    device_from_dict,
    load_device_file,
    local_cpu_spec,
    presets,
    register_backend,
)
from profilers._lut import (
    LUT_SCHEMES,
    Lut,
    LutReport,
    MissingLutError,
    build_lut,
    device_spec,
    export_lut_csv,
    import_lut_csv,
    lut_entries_per_space,
    measure_subnets,
)

__all__ = [
    "LOCAL_CPU",
    "LUT_SCHEMES",
    "Backend",
    "Cost",
    "DeviceSpec",
    "Lut",
    "LutReport",
    "MissingLutError",
    "SimulatorError",
    "UnmappableLayerError",
    "backend_class",
    "backend_for",
    "backend_names",
    "build_lut",
    "device_from_dict",
    "device_spec",
    "export_lut_csv",
    "import_lut_csv",
    "load_device_file",
    "local_cpu_spec",
    "lut_entries_per_space",
    "measure_subnets",
    "presets",
    "register_backend",
]
