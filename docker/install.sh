#!/usr/bin/env bash
# Every install step of the railsight image, so that CI runs the same steps as `docker build`
# (tests/test_deploy.py runs it into a throwaway venv).
#
#   docker/install.sh requirements   print the runtime dependencies listed in pyproject.toml
#   docker/install.sh deps           make the venv, install torch, then those dependencies
#   docker/install.sh app            install railsight itself (no dependencies) and check it
#   docker/install.sh check          only the check: entry points, imports, shipped weights
#   docker/install.sh all            deps, then app
#
# Environment (all optional):
#   VENV                 the virtual environment to install into (default /opt/venv), made if missing
#   PYTHON               the interpreter that makes it (default python3)
#   VARIANT              cpu (default) or cuda: which PyTorch index torch comes from
#   TORCH_VERSION        default 2.14.1 \  the release the Makefile pins; pyproject.toml
#   TORCHVISION_VERSION  default 0.29.1 /  allows torch>=2.3,<=2.14.1
#   TORCH_SPEC           what to ask pip for (default "torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION");
#                        "none" installs no torch here: the venv must already import one (CI, see below)
#   TORCH_INDEX_URL      where torch comes from; default for cpu https://download.pytorch.org/whl/cpu
#                        (a CPU-only build, about 1 GB smaller), for cuda https://download.pytorch.org/whl/cu130;
#                        "default" uses pip's own index settings (PyPI or a local mirror)
#   REQUIREMENTS         a file of requirements to install instead of reading pyproject.toml
#   SRC                  the source tree (default: the folder above this script)
#
# CI cannot download PyTorch's builds, so it runs this script with TORCH_SPEC=none in a venv that
# already sees the torch of the project's .venv; every other step is the one the image runs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="${SRC:-$(dirname "$here")}"
VENV="${VENV:-/opt/venv}"
PYTHON="${PYTHON:-python3}"
VARIANT="${VARIANT:-cpu}"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
TORCH_SPEC="${TORCH_SPEC:-torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION}}"

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

requirements() {
  # The [project] dependencies of pyproject.toml, one per line (tomllib: Python 3.11+).
  "$PYTHON" - "$SRC/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    project = tomllib.load(fh)["project"]
print("\n".join(project.get("dependencies", [])))
PY
}

torch_index() {
  if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    echo "$TORCH_INDEX_URL"
    return
  fi
  case "$VARIANT" in
    cpu) echo "https://download.pytorch.org/whl/cpu" ;;
    cuda) echo "https://download.pytorch.org/whl/cu130" ;;
    *) die "VARIANT must be cpu or cuda, got '$VARIANT'" ;;
  esac
}

make_venv() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
  fi
}

deps() {
  make_venv
  if [[ "$TORCH_SPEC" == "none" ]]; then
    "$VENV/bin/python" -c "import torch" 2>/dev/null || die "TORCH_SPEC=none, but $VENV has no torch"
    say "torch: using the one already there ($("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"
  else
    local index
    index="$(torch_index)"
    # shellcheck disable=SC2086  # TORCH_SPEC is a list of requirements
    if [[ "$index" == "default" ]]; then
      say "torch: $TORCH_SPEC from pip's configured indexes"
      pip install $TORCH_SPEC
    else
      say "torch: $TORCH_SPEC from $index"
      pip install --index-url "$index" $TORCH_SPEC
    fi
  fi
  local reqs="${REQUIREMENTS:-}"
  if [[ -z "$reqs" ]]; then
    reqs="$(mktemp)"
    requirements >"$reqs"
  fi
  say "dependencies: $(grep -c . "$reqs") from ${REQUIREMENTS:-pyproject.toml}"
  # torch is already installed, and pyproject's range admits it, so pip keeps it.
  pip install -r "$reqs"
}

app() {
  [[ -x "$VENV/bin/python" ]] || die "no venv at $VENV: run 'install.sh deps' first"
  say "railsight from $SRC"
  pip install --no-deps "$SRC"
  check
}

check() {
  # Run outside the source tree and without PYTHONPATH, so imports come from the venv, not from $SRC.
  cd /
  unset PYTHONPATH
  "$VENV/bin/railsight" --help >/dev/null  # imports every subcommand
  if [[ -x "$VENV/bin/dask" ]]; then
    "$VENV/bin/dask" worker --help >/dev/null
  else  # dependencies seen from outside the venv (CI) bring no console scripts
    "$VENV/bin/python" -m dask worker --help >/dev/null
  fi
  "$VENV/bin/python" - "$SRC" "$VENV" <<'PY'
import pathlib, sys

src, venv = map(pathlib.Path, sys.argv[1:3])
import kernels, models, service, torch  # noqa: E401

for module in (kernels, models, service):
    where = pathlib.Path(module.__file__).resolve()
    if not where.is_relative_to(venv.resolve()):
        sys.exit(f"install.sh: error: {module.__name__} imports from {where}, not from {venv}")
shipped = sorted(p.name for p in (src / "models" / "weights").glob("*") if p.suffix in {".pt", ".json"})
installed = pathlib.Path(models.__file__).parent / "weights"
missing = [name for name in shipped if not (installed / name).is_file()]
if missing:
    sys.exit(f"install.sh: error: weights not in the installed package: {', '.join(missing)}")
print(f"install.sh: ok: railsight in {venv}, torch {torch.__version__} "
      f"(CUDA build: {torch.version.cuda or 'no'}), {len(shipped)} weights file(s)", file=sys.stderr)
PY
  pip check >&2
}

case "${1:-}" in
  requirements) requirements ;;
  deps) deps ;;
  app) app ;;
  check) check ;;
  all) deps && app ;;
  *) echo "usage: $0 requirements|deps|app|check|all" >&2; exit 64 ;;
esac
