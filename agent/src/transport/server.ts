// Glue shared by the stream listeners: track connections, never let a socket
// or server error escape (PID 1 must not die), and close everything on demand.
import type net from 'node:net';
import type { Logger } from '../log';
import type { OnConnection, TransportKind } from './types';

export interface ServedServer {
  /** Stop listening, destroy open connections, resolve once the server is closed. */
  close(): Promise<void>;
}

export function serve(
  server: net.Server,
  transport: TransportKind,
  peerOf: (sock: net.Socket) => string,
  onConnection: OnConnection,
  log: Logger,
): ServedServer {
  const open = new Set<net.Socket>();
  server.on('connection', (sock: net.Socket) => {
    open.add(sock);
    sock.once('close', () => open.delete(sock));
    // A listener that only logs: an unhandled 'error' would throw in PID 1.
    sock.on('error', (err) => log.debug({ err, transport }, 'connection error'));
    let peer: string;
    try {
      peer = peerOf(sock);
    } catch {
      peer = 'unknown';
    }
    log.debug({ transport, peer }, 'connection accepted');
    try {
      onConnection(sock, { transport, peer });
    } catch (err) {
      log.error({ err, transport, peer }, 'connection handler failed');
      sock.destroy();
    }
  });
  // Errors before 'listening' are reported by whenListening() to the caller.
  server.on('error', (err) => {
    if (server.listening) log.error({ err, transport }, 'listener error');
  });
  let closing: Promise<void> | undefined;
  return {
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        if (!server.listening) {
          for (const s of open) s.destroy();
          resolve();
          return;
        }
        server.close(() => resolve());
        for (const s of open) s.destroy();
      });
      return closing;
    },
  };
}

/** Wait for 'listening' or the first 'error' after calling server.listen(). */
export function whenListening(server: net.Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
  });
}
