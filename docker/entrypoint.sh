#!/usr/bin/env bash
# addray-node: what a container (or a bare host) of an addray Ray cluster runs.
#
#   addray-node head              start the Ray head; blocks (the container's main process)
#   addray-node worker            join the head at RAY_HEAD_ADDRESS; blocks
#   addray-node run CMD [ARGS..]  wait until ADDRAY_WAIT_NODES nodes are up, then run CMD,
#                                 e.g. python sweeps/phase1.py --address ray-head:6379
#
# Environment (defaults in brackets):
#   RAY_HEAD_ADDRESS   HOST:PORT of the head (worker, run)
#   RAY_PORT           the head's GCS port [6379]
#   NODE_IP            address this node is reached at [Ray's choice]
#   NUM_CPUS NUM_GPUS  resources this node offers [detected]
#   RAY_DASHBOARD_HOST interface the head's dashboard binds to [127.0.0.1]
#   RAY_DASHBOARD_PORT [8265]
#   RAY_AUTH_MODE      token; Ray 2.60's token authentication stays on [token]
#   RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH   the cluster's shared token (required)
#   RAY_EXTRA_ARGS     more `ray start` options (ports when several nodes share a host)
#   ADDRAY_WAIT_NODES  nodes `run` waits for [1]; ADDRAY_WAIT_TIMEOUT seconds [300]
set -euo pipefail

die() { echo "addray-node: error: $*" >&2; exit 2; }

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

check_auth() {
    export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
    if [ "$RAY_AUTH_MODE" != "token" ]; then
        die "RAY_AUTH_MODE=$RAY_AUTH_MODE: must be token (the dashboard and job API run code for whoever reaches them)"
    fi
    if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
        die "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH: one must give the cluster's token (make one with: python -c 'import secrets; print(secrets.token_hex(32))')"
    fi
    if [ -n "${RAY_AUTH_TOKEN_PATH:-}" ] && [ ! -r "$RAY_AUTH_TOKEN_PATH" ]; then
        die "RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH: no readable file there"
    fi
}

head_address() {
    [ -n "${RAY_HEAD_ADDRESS:-}" ] || die "RAY_HEAD_ADDRESS: not set (HOST:PORT of the Ray head, e.g. ray-head:6379)"
    case "$RAY_HEAD_ADDRESS" in
        *:*[0-9]) ;;
        *) die "RAY_HEAD_ADDRESS=$RAY_HEAD_ADDRESS: expected HOST:PORT, e.g. ray-head:6379" ;;
    esac
}

node_args() {
    args=()
    [ -n "${NODE_IP:-}" ] && args+=(--node-ip-address="$NODE_IP")
    [ -n "${NUM_CPUS:-}" ] && args+=(--num-cpus="$NUM_CPUS")
    [ -n "${NUM_GPUS:-}" ] && args+=(--num-gpus="$NUM_GPUS")
    # shellcheck disable=SC2206 # RAY_EXTRA_ARGS is a list of options, split on purpose
    [ -n "${RAY_EXTRA_ARGS:-}" ] && args+=(${RAY_EXTRA_ARGS})
    return 0
}

role="${1:-}"
[ $# -gt 0 ] && shift
case "$role" in
    head)
        check_auth
        node_args
        exec ray start --head --block --port="${RAY_PORT:-6379}" \
            --dashboard-host="${RAY_DASHBOARD_HOST:-127.0.0.1}" \
            --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" "${args[@]}" "$@"
        ;;
    worker)
        check_auth
        head_address
        node_args
        exec ray start --block --address="$RAY_HEAD_ADDRESS" "${args[@]}" "$@"
        ;;
    run)
        check_auth
        head_address
        [ $# -gt 0 ] || die "run: give the command to run, e.g. run python sweeps/phase1.py --address \$RAY_HEAD_ADDRESS"
        python -m addray.sweep.cluster wait "$RAY_HEAD_ADDRESS" --nodes "${ADDRAY_WAIT_NODES:-1}" \
            --timeout "${ADDRAY_WAIT_TIMEOUT:-300}"
        exec "$@"
        ;;
    -h|--help|help)
        usage
        ;;
    *)
        die "'$role': unknown role (head, worker, run, --help)"
        ;;
esac
