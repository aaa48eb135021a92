// listen(address, onConnection, log): one entry point for every transport the
// agent serves on. Each accepted connection is a net.Socket handed to
// onConnection (usually through sniff() to pick ttrpc or gRPC).
import net from 'node:net';
import type { Logger } from '../log';
import { formatAddress, parseListenAddress, type ListenAddress } from './address';
import { listenSerial, type SerialOptions } from './serial';
import { serve, whenListening } from './server';
import { listenUnix } from './unix';
import type { Listener, OnConnection } from './types';
import { listenVsock } from './vsock';

export type { ConnectionInfo, Listener, OnConnection, TransportKind } from './types';
export { listenUnix } from './unix';
export { listenVsock } from './vsock';
export { listenSerial } from './serial';

export interface ListenOptions {
  /** virtio-serial lookup/reopen settings (tests inject a fake sysfs tree or device). */
  serial?: SerialOptions;
}

export async function listen(
  addr: string | ListenAddress,
  onConnection: OnConnection,
  log: Logger,
  opts: ListenOptions = {},
): Promise<Listener> {
  const a = typeof addr === 'string' ? parseListenAddress(addr) : addr;
  switch (a.kind) {
    case 'vsock':
      return listenVsock(a.cid, a.port, onConnection, log);
    case 'unix':
      return listenUnix(a.path, a.abstract, onConnection, log);
    case 'tcp':
      return listenTcp(a.host, a.port, onConnection, log);
    case 'serial':
      return listenSerial(a.name, onConnection, log, opts.serial);
  }
}

export async function listenTcp(host: string, port: number, onConnection: OnConnection, log: Logger): Promise<Listener> {
  const server = net.createServer();
  const served = serve(
    server,
    'tcp',
    (s) => formatAddress({ kind: 'tcp', host: s.remoteAddress ?? '?', port: s.remotePort ?? 0 }),
    onConnection,
    log,
  );
  const ready = whenListening(server);
  server.listen({ host, port });
  await ready;
  const bound = server.address() as net.AddressInfo;
  const address = formatAddress({ kind: 'tcp', host: host, port: bound.port });
  log.warn({ address }, 'listening on TCP: unauthenticated and for development only');
  return { address, close: () => served.close() };
}
