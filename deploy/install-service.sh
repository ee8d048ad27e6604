#!/bin/sh
# Install one Hygoshop service into a new virtualenv from the output of `make wheels`:
# its pinned runtime requirements (hashes checked), then our own wheels. The Dockerfile
# runs this, and so does deploy/tests/test_image_install.py, so the image's install
# steps are the tested ones.
#
#   usage: install-service.sh SERVICE DIST_DIR VENV_DIR
#   env:   UV (default: uv), PYTHON (default: python3), UV_OFFLINE=1 to install from uv's cache only
set -eu

if [ "$#" -ne 3 ]; then
    echo "usage: $0 SERVICE DIST_DIR VENV_DIR" >&2
    exit 2
fi
service=$1
dist=$2
venv=$3
uv=${UV:-uv}
module=$(printf '%s' "$service" | tr '-' '_')
requirements="$dist/requirements-$service.txt"

if [ ! -f "$requirements" ]; then
    echo "$requirements is missing: run \`make wheels\` first" >&2
    exit 1
fi
"$uv" venv --quiet --python "${PYTHON:-python3}" "$venv"
"$uv" pip install --quiet --python "$venv/bin/python" --compile-bytecode \
    --require-hashes --no-deps -r "$requirements"
# xds-protos ships a stale copy of the opentelemetry/proto modules (grpc/grpc#42926);
# whichever package is installed last owns them, and the OTLP exporter needs the real
# ones: reinstall opentelemetry-proto over it.
if grep -q '^opentelemetry-proto==' "$requirements"; then
    "$uv" pip install --quiet --python "$venv/bin/python" --compile-bytecode \
        --require-hashes --no-deps --reinstall-package opentelemetry-proto -r "$requirements"
fi
"$uv" pip install --quiet --python "$venv/bin/python" --compile-bytecode --no-deps \
    "$dist"/hygoshop_contracts-*.whl "$dist"/hygoshop_platform-*.whl "$dist/hygoshop_$module"-*.whl
