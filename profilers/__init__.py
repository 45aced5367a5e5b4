"""Device profilers: measured (CPU, CUDA) and simulated (NPU, CIM) backends, LUT building and LUT-sums."""

from profilers._base import Backend, Cost, DeviceSpec, SimulatorError, UnmappableLayerError
from profilers._devices import (
    BACKENDS,
    LOCAL_CPU,
    backend_for,
    device_from_dict,
    load_device_file,
    local_cpu_spec,
    presets,
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
    "BACKENDS",
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
    "backend_for",
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
]
