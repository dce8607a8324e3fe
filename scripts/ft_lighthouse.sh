#!/usr/bin/env bash
# Start torchft's lighthouse for a fault-tolerant job ([fault_tolerance], the optional ft extra) in the
# background and print the line that points the replica groups at it.
#
#   eval "$(scripts/ft_lighthouse.sh --min-replicas 2 [--port 29510] [--join-timeout-ms 60000])"
#   # -> TORCHFT_LIGHTHOUSE=http://<this host>:29510 and LIGHTHOUSE_PID in the calling shell
#
# Run it once per job on one node (SLURM: the first node of the allocation, see docs/parallelism.md);
# every replica group's torchrun then gets TORCHFT_LIGHTHOUSE (or fault_tolerance.lighthouse). The
# lighthouse's log goes to ${LIGHTHOUSE_LOG:-lighthouse.log}; stop it with `kill $LIGHTHOUSE_PID`.
set -euo pipefail
MIN_REPLICAS=1 PORT=29510 JOIN_TIMEOUT_MS=60000
while [[ $# -gt 0 ]]; do
    case $1 in
        --min-replicas) MIN_REPLICAS=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --join-timeout-ms) JOIN_TIMEOUT_MS=$2; shift 2 ;;
        *) echo "error: unknown argument $1 (--min-replicas N, --port P, --join-timeout-ms MS)" >&2; exit 2 ;;
    esac
done
BIN=$(command -v torchft_lighthouse || true)
[[ -z $BIN && -x "$(dirname "$(command -v "${PYTHON:-python3}")")/torchft_lighthouse" ]] &&
    BIN="$(dirname "$(command -v "${PYTHON:-python3}")")/torchft_lighthouse"
if [[ -z $BIN ]]; then
    echo "error: torchft_lighthouse not found; pip install '.[ft]'" >&2
    exit 2
fi
nohup "$BIN" --min_replicas "$MIN_REPLICAS" --bind "[::]:$PORT" --join_timeout_ms "$JOIN_TIMEOUT_MS" \
    >"${LIGHTHOUSE_LOG:-lighthouse.log}" 2>&1 &
PID=$!
# Ready once it accepts connections (a few hundred ms); give up after 30 s.
for _ in $(seq 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "export TORCHFT_LIGHTHOUSE=http://$(hostname):$PORT LIGHTHOUSE_PID=$PID"
        exit 0
    fi
    kill -0 "$PID" 2>/dev/null || { echo "error: the lighthouse exited; see ${LIGHTHOUSE_LOG:-lighthouse.log}" >&2; exit 1; }
    sleep 0.2
done
kill "$PID"
echo "error: the lighthouse did not listen on port $PORT within 30 s" >&2
exit 1
