#!/usr/bin/env bash
# Build the sharedml Nitro enclave image (EIF) and print the reference values to pin.
# Run on an EC2 instance with Nitro Enclaves enabled (nitro-cli installed), from the repo root:
#   deploy/tee/nitro/build.sh [signing-key.pem signing-cert.pem]
set -euo pipefail
python -m pip wheel --no-deps -w dist .
test -f deploy/tee/nitro/requirements.lock || {
  echo "write deploy/tee/nitro/requirements.lock first (pip-compile --generate-hashes)" >&2; exit 2; }
docker build -t sharedml-enclave:latest -f deploy/tee/nitro/Dockerfile .
sign=()
if [ $# -eq 2 ]; then sign=(--private-key "$1" --signing-certificate "$2"); fi
nitro-cli build-enclave --docker-uri sharedml-enclave:latest --output-file sharedml-enclave.eif "${sign[@]}" \
  > build.json
sharedml tee measure nitro build.json | tee reference.json
# Run (the job id and the deployment CA reach the enclave as arguments after the image's own):
#   nitro-cli run-enclave --eif-path sharedml-enclave.eif --cpu-count 2 --memory 4096
# and forward a TCP port on the parent to the enclave's vsock port 8443 (e.g. with socat).
