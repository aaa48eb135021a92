import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { nullLogger } from '../../agent/src/log';
import { findVirtioPort, listVirtioPorts, listenSerial } from '../../agent/src/transport/serial';

const root = fileURLToPath(new URL('../fixtures/virtio-ports', import.meta.url));

describe('virtio-serial port lookup (fake sysfs tree)', () => {
  it('maps port names to device nodes, skipping entries without a name', () => {
    const ports = listVirtioPorts(root, '/dev');
    expect([...ports.entries()]).toEqual([
      ['agent.channel.0', '/dev/vport0p1'],
      ['org.qemu.guest_agent.0', '/dev/vport0p2'],
    ]);
  });

  it('finds a port by name in an injected device dir', () => {
    expect(findVirtioPort('agent.channel.0', root, '/tmp/devs')).toBe(path.join('/tmp/devs', 'vport0p1'));
    expect(findVirtioPort('org.qemu.guest_agent.0', root)).toBe('/dev/vport0p2');
    expect(findVirtioPort('nope', root)).toBeUndefined();
  });

  it('a missing sysfs directory means no ports', () => {
    expect(listVirtioPorts(path.join(root, 'does-not-exist')).size).toBe(0);
  });

  it('listenSerial rejects an unknown port name and lists the present ones', async () => {
    await expect(listenSerial('agent.channel.9', () => {}, nullLogger(), { sysfsRoot: root })).rejects.toThrow(
      /"agent.channel.9" not found .*present: agent.channel.0, org.qemu.guest_agent.0/,
    );
  });
});
