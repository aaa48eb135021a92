#!/usr/bin/env bash
# The README's first command. Installs what it needs, builds, starts the agent as
# PID 1 of a private PID+mount+UTS namespace listening on a unix socket, and drives it
# with agent-ctl over ttrpc and gRPC. (The QEMU issue upgrades this to a real guest.)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates namespaces)" >&2; exit 2; }
bash .ci/install-deps
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
else
  npm run -s build >&2
fi
dir=$(mktemp -d /tmp/guestkit-demo.XXXXXX)
sock="$dir/agent.sock"
log="$dir/agent.log"
unshare -pfmu --mount-proc node dist/kata-agent.mjs --listen "unix://$sock" --log-level debug >"$log" 2>&1 &
ns_pid=$!
cleanup() { kill "$ns_pid" 2>/dev/null || true; wait "$ns_pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "demo: agent did not start; its log:" >&2; cat "$log" >&2; exit 1; }
ctl() { node dist/agent-ctl.mjs --addr "unix://$sock" "$@"; }
echo "== Health.Check over ttrpc";  ctl check
echo "== Health.Check over gRPC";   ctl --proto grpc check
echo "== Health.Version";           ctl call Health.Version --json '{}'
echo "== GetGuestDetails";          ctl call GetGuestDetails --json '{"mem_block_size": true, "mem_hotplug_probe": true}'
echo "== CreateContainer (not yet served: prints the status)"
ctl call CreateContainer --json '{"container_id": "demo"}' || echo "(exit $?)"
echo "== agent log (first lines)"; head -n 5 "$log"
