#!/usr/bin/env bash
# The README's first command. Installs what it needs, builds, then with osbuilder: the guest
# kernel (from kernel-configs/; ~7 min on 2 cores the first time, cached afterwards), the minimal
# rootfs and its initrd; boots it under QEMU (osbuilder run: TCG here, KVM where it works), and
# drives the agent in the guest with agent-ctl over the virtio-serial socket: a sandbox whose
# virtio-fs share holds a busybox root file system, a container that echoes, its output, its exit
# status, then DestroySandbox, which powers the guest off. Prints the boot timeline.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it installs packages and starts virtiofsd)" >&2; exit 2; }
bash .ci/install-deps
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
else
  npm run -s build >&2
fi

dir=$(mktemp -d /tmp/guestkit-demo.XXXXXX)
run_pid=""
cleanup() {
  [ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
osb() { node dist/osbuilder.mjs "$@"; }

echo "== guest kernel (osbuilder kernel build)"
osb kernel build --output "$dir/kernel"
echo "== guest root file system and initrd (osbuilder rootfs minimal, osbuilder initrd)"
osb rootfs minimal --output "$dir/rootfs" --quiet
osb initrd --rootfs "$dir/rootfs" --compression lz4 --output "$dir/initrd.lz4" --quiet

# What a Kata host shares with the guest: the containers' root file systems, under <id>/rootfs.
rootfs="$dir/shared/demo/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/proc" "$rootfs/dev" "$rootfs/tmp" "$rootfs/etc"
cp /bin/busybox "$rootfs/bin/busybox"
for a in sh echo hostname uname cat; do ln -sf busybox "$rootfs/bin/$a"; done

echo "== booting the guest (osbuilder run)"
osb run --kernel "$dir/kernel/vmlinuz" --initrd "$dir/initrd.lz4" --share "$dir/shared" \
  --socket "$dir/agent.sock" --console "$dir/console.log" --json --quiet >"$dir/run.out" 2>"$dir/run.err" &
run_pid=$!
until [ -s "$dir/run.out" ]; do
  if ! kill -0 "$run_pid" 2>/dev/null; then echo "demo: the guest did not come up:" >&2; cat "$dir/run.err" >&2; exit 1; fi
  sleep 0.2
done
ctl() { node dist/agent-ctl.mjs --addr "serial:$dir/agent.sock" "$@"; }

echo "== Health.Check (ttrpc over virtio-serial)"; ctl check
echo "== CreateSandbox (the virtio-fs share as its storage)"
ctl call CreateSandbox --json '{"hostname": "guestkit-vm", "sandbox_id": "demo-sandbox",
  "storages": [{"driver": "virtio-fs", "source": "kataShared", "fstype": "virtiofs", "mount_point": "/run/kata-containers/shared/containers"}]}' >/dev/null && echo ok
echo "== CreateContainer + StartContainer (busybox, through crun in the guest)"
ctl call CreateContainer --json '{
  "container_id": "demo", "exec_id": "demo",
  "OCI": {
    "Version": "1.0.2",
    "Process": {"Args": ["/bin/sh", "-c", "echo hello from a guestkit VM; echo \"kernel: $(uname -r), hostname: $(hostname)\""],
                "Env": ["PATH=/bin"], "Cwd": "/", "User": {"UID": 0, "GID": 0}},
    "Root": {"Path": "rootfs"},
    "Mounts": [{"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}],
    "Linux": {"Namespaces": [{"Type": "pid"}, {"Type": "mount"}, {"Type": "ipc"}, {"Type": "uts"}]}
  }}' >/dev/null
ctl call StartContainer --json '{"container_id": "demo"}' >/dev/null
echo "== what the container printed (ReadStdout)"
while out=$(ctl call ReadStdout --json '{"container_id": "demo", "len": 65536}' 2>/dev/null); do
  node -e 'process.stdout.write(Buffer.from(JSON.parse(process.argv[1]).data, "base64"))' "$out"
done
echo "== WaitProcess";     ctl call WaitProcess --json '{"container_id": "demo"}'
echo "== RemoveContainer"; ctl call RemoveContainer --json '{"container_id": "demo", "timeout": 30}' >/dev/null && echo ok
echo "== DestroySandbox (the guest powers off)"
# The reply can be lost when the guest powers off right after sending it; retry only while
# the guest is still up.
for _ in 1 2 3; do
  ctl call DestroySandbox --json '{}' >/dev/null 2>"$dir/destroy.err" && break
  kill -0 "$run_pid" 2>/dev/null || break
  echo "demo: DestroySandbox: $(tail -n 1 "$dir/destroy.err"); retrying" >&2
  sleep 1
done
wait "$run_pid" && status=0 || status=$?
run_pid=""
[ "$status" -eq 0 ] || { echo "demo: the guest did not power off cleanly:" >&2; cat "$dir/run.err" >&2; exit 1; }
tail -n 1 "$dir/run.out"
echo "== boot timeline"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").split("\n")[0]);
  const s = (ms) => (ms === undefined ? "?" : (ms / 1000).toFixed(2) + " s");
  const t = r.timeline;
  console.log(`QEMU start -> kernel ${s(t.kernelMs)} -> agent exec ${s(t.initMs)} -> listening ${s(t.listeningMs)} -> first reply ${s(t.readyMs)} (${r.accel}; agent start-up ${r.agentStartupMs} ms)`);
' "$dir/run.out"
