#!/usr/bin/env bash
# The README's first command. Installs what it needs, builds, starts the agent as PID 1
# of private PID+mount+UTS namespaces on a unix socket, then drives it with agent-ctl:
# health over ttrpc and gRPC, a sandbox, and a busybox container run through crun,
# printing what the container printed. (The QEMU issue moves this into a real guest.)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates namespaces and containers)" >&2; exit 2; }
bash .ci/install-deps
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
else
  npm run -s build >&2
fi

dir=$(mktemp -d /tmp/guestkit-demo.XXXXXX)
sock="$dir/agent.sock"
log="$dir/agent.log"
# The agent mounts its own cgroups as the guest would. A host with pure cgroup2 keeps the
# default; a hybrid v1+v2 host (which crun refuses) gets the v1 layout from the command line.
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then echo "" >"$dir/cmdline"
else echo "systemd.unified_cgroup_hierarchy=0" >"$dir/cmdline"; fi
# Outer mount namespace: drop the host's cgroup mounts so the agent (PID 1 of the inner
# namespaces) mounts its own, as in a guest.
unshare -m sh -c 'umount -R /sys/fs/cgroup 2>/dev/null || umount -l /sys/fs/cgroup 2>/dev/null; exec unshare -pfmu --mount-proc "$@"' \
  sh node dist/kata-agent.mjs --listen "unix://$sock" --cmdline-file "$dir/cmdline" >"$log" 2>&1 &
outer=$!
disown "$outer" 2>/dev/null || true
cleanup() {
  kill -9 "$outer" 2>/dev/null || true
  [ -n "${agent_pid:-}" ] && kill -9 "$agent_pid" 2>/dev/null || true
  sleep 0.2
  # On a v1 host the hierarchies are shared with the host: drop the (now empty) parent the
  # agent's sandbox cgroups lived under. rmdir refuses a cgroup still in use.
  for c in /sys/fs/cgroup/*/kata /sys/fs/cgroup/kata /sys/fs/cgroup/kata-agent /sys/fs/cgroup/unified/kata-agent; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 200); do grep -q '"msg":"listening"' "$log" 2>/dev/null && break; sleep 0.05; done
grep -q '"msg":"listening"' "$log" || { echo "demo: agent did not start; its log:" >&2; cat "$log" >&2; exit 1; }
agent_pid=$(pgrep -f -n "dist/kata-agent.mjs --listen unix://$sock")
ctl() { node dist/agent-ctl.mjs --addr "unix://$sock" "$@"; }

echo "== Health.Check over ttrpc";  ctl check
echo "== Health.Check over gRPC";   ctl --proto grpc check
echo "== GetGuestDetails";          ctl call GetGuestDetails --json '{"mem_block_size": true}'

# A busybox root file system where a Kata host would share it: the agent's
# /run/kata-containers/shared/containers/<id>/rootfs (reached through /proc/<pid>/root).
rootfs="/proc/$agent_pid/root/run/kata-containers/shared/containers/demo/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/proc" "$rootfs/dev" "$rootfs/tmp" "$rootfs/etc"
cp /bin/busybox "$rootfs/bin/busybox"
for a in sh echo hostname id uname cat; do ln -sf busybox "$rootfs/bin/$a"; done

echo "== CreateSandbox"
ctl call CreateSandbox --json '{"hostname": "guestkit-demo", "sandbox_id": "demo-sandbox"}'
echo "== CreateContainer + StartContainer (busybox sh, through crun)"
ctl call CreateContainer --json '{
  "container_id": "demo", "exec_id": "demo",
  "OCI": {
    "Version": "1.0.2",
    "Process": {"Args": ["/bin/sh", "-c", "echo hello from a container in a guestkit sandbox; echo \"hostname: $(hostname)\"; echo \"pid in its namespace: $$\"; id"],
                "Env": ["PATH=/bin"], "Cwd": "/", "User": {"UID": 0, "GID": 0}},
    "Root": {"Path": "rootfs"},
    "Hostname": "guestkit-demo",
    "Mounts": [{"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}],
    "Linux": {"Namespaces": [{"Type": "pid"}, {"Type": "mount"}, {"Type": "ipc"}, {"Type": "uts"}]}
  }}' >/dev/null
ctl call StartContainer --json '{"container_id": "demo"}' >/dev/null
echo "== what the container printed (ReadStdout)"
while out=$(ctl call ReadStdout --json '{"container_id": "demo", "len": 65536}' 2>/dev/null); do
  node -e 'process.stdout.write(Buffer.from(JSON.parse(process.argv[1]).data, "base64"))' "$out"
done
echo "== WaitProcess";     ctl call WaitProcess --json '{"container_id": "demo"}'
echo "== RemoveContainer"; ctl call RemoveContainer --json '{"container_id": "demo", "timeout": 10}' >/dev/null && echo ok
echo "== DestroySandbox";  ctl call DestroySandbox --json '{}' >/dev/null && echo ok
