#!/usr/bin/env bash
# The GPU check in one command, for a machine with torch but without NodeWeaver's other packages: installs
# the wheels carried in .whl/ (untracked; see gpu_check.py's docstring) into $NW_GPU_SITE (default /tmp/site),
# puts them first on PYTHONPATH, then runs evals/benchmarks/gpu_check.py with results under $OUT.
#
#   OUT=/tmp/out bash evals/benchmarks/gpu_check.sh [gpu_check.py options]   # default: --device cuda
#   bash evals/benchmarks/gpu_check.sh --install-only                       # only the wheels
set -u
cd "$(dirname "$0")/../.." || exit 2
OUT="${OUT:-/tmp/gpu_check_out}"
SITE="${NW_GPU_SITE:-/tmp/site}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"

if ls .whl/*.whl >/dev/null 2>&1 && [ -z "${NW_GPU_NO_INSTALL:-}" ]; then
  began=$(date +%s)
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      .whl/*.whl 2>"$OUT/pip.log"; then
    echo "pip install failed (see pip.log); unpacking the wheels instead" >&2
    "$PY" -c "import glob, sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in glob.glob('.whl/*.whl')]" \
      "$SITE" || exit 3
  fi
  echo "wheels: $(ls .whl/*.whl | wc -l) installed into $SITE in $(( $(date +%s) - began )) s"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
[ "${1:-}" = "--install-only" ] && exit 0

{ "$PY" -VV; nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv 2>&1; } \
  | tee "$OUT/machine.txt"
args=("$@")
case " $* " in *" --device "*) ;; *) args=(--device cuda "${args[@]}") ;; esac
"$PY" -m evals.benchmarks.gpu_check --out "$OUT/gpu_check.json" "${args[@]}" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
