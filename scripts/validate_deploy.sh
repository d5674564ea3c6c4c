#!/usr/bin/env bash
# Validates deploy/ offline (no cluster, no Docker engine needed).
#
#   scripts/validate_deploy.sh [all|yamllint|schema|kustomize] [FILE...]
#
#   yamllint   yamllint with deploy/.yamllint over every YAML file
#   schema     deploy/validate/validate.mjs: each Kubernetes object against the API's JSON
#              schemas and types (kubernetes-models + TypeScript), KServe objects' embedded
#              Kubernetes parts the same way, the Dockerfile with dockerfile-utils. The npm
#              packages are installed from deploy/validate/package-lock.json (pinned) into
#              deploy/validate/node_modules on first use.
#   kustomize  `kubectl kustomize deploy/k8s` renders (client-side, no server involved)
#   all        every step above (the default)
#
# FILE... replaces the default file set of a single step (used by the tests to feed it broken
# manifests). Exit status: 0 when every step that ran passed, 1 when one failed, 77 when a
# single requested step could not run (its tool is missing or the npm registry is
# unreachable); `all` reports skipped steps and exits 0 if nothing that ran failed.
set -uo pipefail
cd "$(dirname "$0")/.."

SKIP=77
step=${1:-all}
[ $# -gt 0 ] && shift
files=("$@")

yaml_files() {
    find deploy -path deploy/validate -prune -o \( -name '*.yaml' -o -name '*.yml' \) -print | sort
}

run_yamllint() {
    if ! command -v yamllint >/dev/null 2>&1; then
        echo "yamllint: skipped (not installed; Debian package yamllint, see scripts/deps.sh test)"
        return $SKIP
    fi
    local f=("${files[@]}")
    [ ${#f[@]} -gt 0 ] || mapfile -t f < <(yaml_files)
    yamllint --strict -c deploy/.yamllint "${f[@]}" || return 1
    echo "yamllint: ${#f[@]} files clean"
}

# Installs the pinned validator packages once (again when the lockfile changes).
npm_install() {
    local dir=deploy/validate
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "schema: skipped (node and npm are not installed)"
        return $SKIP
    fi
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
        [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        return 0
    fi
    local log
    log=$(mktemp)
    if ! (cd "$dir" && timeout 600 npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
        echo "schema: skipped (npm ci failed; is the npm registry reachable?):"
        tail -5 "$log" | sed 's/^/    /'
        rm -f "$log"
        return $SKIP
    fi
    rm -f "$log"
}

run_schema() {
    npm_install || return $?
    local f=("${files[@]}") args=()
    if [ ${#f[@]} -eq 0 ]; then
        mapfile -t f < <(yaml_files)
        args=(--dockerfile "$PWD/deploy/Dockerfile")
    fi
    # The validator runs in deploy/validate (its node_modules); hand it absolute paths.
    local abs=()
    for x in "${f[@]}"; do
        case "$x" in
        --dockerfile) abs+=("$x") ;;
        /*) abs+=("$x") ;;
        *) abs+=("$PWD/$x") ;;
        esac
    done
    (cd deploy/validate && node validate.mjs "${args[@]}" "${abs[@]}")
}

run_kustomize() {
    if ! command -v kubectl >/dev/null 2>&1; then
        echo "kustomize: skipped (kubectl is not installed)"
        return $SKIP
    fi
    local out n
    out=$(kubectl kustomize deploy/k8s 2>&1) || {
        echo "$out"
        return 1
    }
    n=$(grep -c '^kind:' <<<"$out")
    echo "kustomize: deploy/k8s renders $n objects"
}

case "$step" in
yamllint | schema | kustomize)
    "run_$step"
    exit $?
    ;;
all)
    failed=0
    skipped=()
    for s in yamllint schema kustomize; do
        "run_$s"
        rc=$?
        if [ $rc -eq $SKIP ]; then
            skipped+=("$s")
        elif [ $rc -ne 0 ]; then
            echo "validate_deploy: $s FAILED"
            failed=1
        fi
    done
    [ ${#skipped[@]} -eq 0 ] || echo "validate_deploy: skipped: ${skipped[*]}"
    exit $failed
    ;;
*)
    echo "usage: $0 [all|yamllint|schema|kustomize] [FILE...]" >&2
    exit 2
    ;;
esac
