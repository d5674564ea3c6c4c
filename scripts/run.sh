#!/usr/bin/env bash
# make run: serve the example repository (models/) on 127.0.0.1:8000 until Ctrl-C.
# HOST, PORT and REPO override the defaults; extra arguments go to `inferd serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=${REPO:-models}
if [ ! -d "$repo" ] || [ -z "$(ls -A "$repo" 2>/dev/null)" ]; then
    echo "run.sh: no models in $repo (the example models are committed under models/;" >&2
    echo "        tools/train_examples.py regenerates them)" >&2
    exit 1
fi
echo "serving $repo on http://${HOST:-127.0.0.1}:${PORT:-8000}  (Ctrl-C stops)" >&2
exec build/inferd serve --repo "$repo" --host "${HOST:-127.0.0.1}" --http-port "${PORT:-8000}" "$@"
