#!/usr/bin/env bash
# One prepared GPU check of vidx: the encoder's bf16 throughput, decoding on every core, the decode ->
# encode pipeline and the GPU's utilisation under it, hardware decoding, and a text query's latency,
# written as DIR/gpu_check.json and DIR/gpu_check.md (README: Benchmarks).
set -euo pipefail

usage() {
  cat <<'USAGE'
bench/gpu_check.sh --prepare   here, where the registry answers: fill bench/gpu_wheels (cp312 wheels, footage)
bench/gpu_check.sh --cpu DIR   here: rehearse every step with tiny sizes (a test runs it)
bench/gpu_check.sh DIR         on the GPU machine: its own python3 (torch with CUDA) and the carried wheels
PYTHON overrides the interpreter (default: .venv/bin/python for --prepare and --cpu, python3 for a GPU run).
USAGE
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS=$ROOT/bench/gpu_wheels
RUN_LIMIT_S=480  # the whole GPU run, the wheels' install included; a backstop: each step has its own budget

die() { echo "gpu_check: $*" >&2; exit 2; }
here_python() { if [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"; else echo python3; fi; }

install_wheels() {  # one at a time: a wheel that does not install costs the steps that need it, not the run
  local wheel
  for wheel in "$WHEELS"/*.whl; do
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$1" "$wheel" \
      || echo "gpu_check: could not install $(basename "$wheel"): the steps that need it will say so" >&2
  done
}

case "${1:-}" in
  --prepare) exec "${PYTHON:-$(here_python)}" "$ROOT/bench/gpu_prepare.py" ;;
  --cpu) [ $# -eq 2 ] || die "usage: $0 --cpu DIR"
         exec "${PYTHON:-$(here_python)}" "$ROOT/bench/gpu_check.py" --cpu "$2" ;;
  ""|-h|--help) usage; exit 0 ;;
  -*) usage >&2; die "unknown option $1" ;;
esac
[ $# -eq 1 ] || die "usage: $0 DIR"

PY=${PYTHON:-python3}
"$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null \
  || die "$PY has no torch that sees a GPU: run this on the GPU machine, or rehearse here with --cpu DIR"
compgen -G "$WHEELS/*.whl" >/dev/null \
  || die "no wheels in bench/gpu_wheels: run bench/gpu_check.sh --prepare here first, and carry bench/gpu_wheels"
SITE=$(mktemp -d /tmp/vidx-gpu-site.XXXXXX)
trap 'rm -rf "$SITE"' EXIT
install_wheels "$SITE"
echo "gpu_check: wheels installed in $SECONDS s" >&2
PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
  timeout "$((RUN_LIMIT_S - SECONDS))" "$PY" "$ROOT/bench/gpu_check.py" "$1"
