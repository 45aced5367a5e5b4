"""What the dashboard pages show, as data: tables and summaries computed by ``pareto``, ``profilers`` and
``predictors`` (no Streamlit here, so every function is testable and benchmarkable on its own). One module per page
(``devices``, ``search``, ``fronts``, ``export``, as ``dashboard/views/``; the Trials page's is ``dashboard._explore``)
and ``shared`` for what several pages use; the pages read them through this package."""

from dashboard._data.devices import (
    UPLOAD_FILE,
    PredictorQuality,
    device_table,
    import_upload,
    lut_by_op,
    lut_coverage,
    lut_layers,
    predictor_quality,
    profile_progress,
    shown_name,
    validate_device_upload,
)
from dashboard._data.export import MANIFEST_FILE, bundle_zip
from dashboard._data.fronts import (
    FrontView,
    axis_range,
    compare_fronts,
    front_view,
    hover_texts,
    projection_front,
    quality_range,
    runtime_setting,
    scales_differ,
    study_summary,
)
from dashboard._data.search import (
    budget_input_format,
    default_space,
    make_spec,
    parse_fixed,
    quality_objectives,
    search_progress,
    typical_costs,
)
from dashboard._data.shared import config_document, hwpareto_studies, operating_point_frame, space_choices, study_marker

__all__ = [
    "MANIFEST_FILE",
    "UPLOAD_FILE",
    "FrontView",
    "PredictorQuality",
    "axis_range",
    "budget_input_format",
    "bundle_zip",
    "compare_fronts",
    "config_document",
    "default_space",
    "device_table",
    "front_view",
    "hover_texts",
    "hwpareto_studies",
    "import_upload",
    "lut_by_op",
    "lut_coverage",
    "lut_layers",
    "make_spec",
    "operating_point_frame",
    "parse_fixed",
    "predictor_quality",
    "profile_progress",
    "projection_front",
    "quality_objectives",
    "quality_range",
    "runtime_setting",
    "scales_differ",
    "search_progress",
    "shown_name",
    "space_choices",
    "study_marker",
    "study_summary",
    "typical_costs",
    "validate_device_upload",
]
