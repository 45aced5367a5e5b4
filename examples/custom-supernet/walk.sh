#!/usr/bin/env bash
# The "Bring your own SuperNet" walk, end to end, on a throwaway SQLite store (about a minute on 2 cores):
# the plugin is listed, its layers are profiled on this CPU, a search trades capacity against latency, the front's
# knee is exported with an ONNX graph that onnxruntime checks against the PyTorch SubNet, and the example's tests run.
#
# Needs the example installed where $PYTHON sees it (pip install -e examples/custom-supernet).
# Environment: HWPARETO (default: hwpareto), PYTHON (default: python), WALK_DIR (kept; default: a temporary folder,
# removed at the end).
set -euo pipefail

HWPARETO=${HWPARETO:-hwpareto}
PYTHON=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
if [[ -n ${WALK_DIR:-} ]]; then
  mkdir -p "$WALK_DIR"
else
  WALK_DIR=$(mktemp -d)
  trap 'rm -rf "$WALK_DIR"' EXIT
fi
export HWPARETO_STORE="$WALK_DIR/walk.db"
STUDY=resnet-tiny-cpu
step() { printf '\n== %s\n' "$*"; }

step "hwpareto spaces: the plugin is listed"
"$HWPARETO" spaces --json | "$PYTHON" -c '
import json, sys
names = [s["name"] for s in json.load(sys.stdin)]
assert "resnet-tiny" in names, f"resnet-tiny not among {names}"
print("space resnet-tiny listed among", len(names), "spaces")'

step "hwpareto profile: every distinct layer on this CPU"
"$HWPARETO" profile --device cpu-local --space resnet-tiny --json | "$PYTHON" -c '
import json, sys
r = json.load(sys.stdin)
assert not r["failed"] and r["remaining"] == 0, r
print("%d layers in the LUT (%d measured now, %.1f s)" % (r["layers"], r["measured"], r["seconds"]))'

step "hwpareto search: most parameters (capacity) against least latency, no accuracy predictor"
"$HWPARETO" search --space resnet-tiny --objective params:max --objective latency_ms@cpu-local \
  --trials 300 --population 30 --name "$STUDY"

step "hwpareto front"
"$HWPARETO" front "$STUDY" --json > "$WALK_DIR/front.json"
KNEE=$("$PYTHON" -c '
import json, sys
front = json.load(open(sys.argv[1]))
assert len(front["front"]) >= 2, front
print(front["knee"])' "$WALK_DIR/front.json")
"$HWPARETO" front "$STUDY"

step "hwpareto export: the knee (trial $KNEE) with weights and ONNX (an untrained SuperNet's: none was trained here)"
"$HWPARETO" export "$STUDY" "$KNEE" --out "$WALK_DIR/bundle" --random-weights

step "onnxruntime runs model.onnx like the PyTorch SubNet"
"$PYTHON" - "$WALK_DIR/bundle" <<'EOF'
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file

from supernet import get_space

bundle = Path(sys.argv[1])
doc = json.loads((bundle / "config.json").read_text())
space = get_space(doc["space"])
config = space.validate(doc)
module = space.subnet(config)
module.load_state_dict(load_file(bundle / "weights.safetensors"))
x = np.random.default_rng(0).standard_normal((3, *doc["input_shape"][1:])).astype(np.float32)
session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
(onnx_out,) = session.run(None, {"input": x})
with torch.no_grad():
    torch_out = module.eval()(torch.from_numpy(x)).numpy()
diff = float(np.abs(onnx_out - torch_out).max())
assert onnx_out.shape == (3, 10) and diff <= 1e-4, (onnx_out.shape, diff)
print(f"model.onnx: output {onnx_out.shape}, max |onnx - torch| = {diff:.2e}")
EOF

step "the example's own tests"
(cd "$HERE" && "$PYTHON" -m pytest -q -p no:cacheprovider tests)

step "walk done"
