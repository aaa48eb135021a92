// Shared listener types.
import type net from 'node:net';

export type TransportKind = 'vsock' | 'unix' | 'tcp' | 'serial';

export interface ConnectionInfo {
  transport: TransportKind;
  /** Who connected, for logs: `vsock://CID:PORT`, `tcp://1.2.3.4:5678`, `unix://PATH`, `serial:NAME`. */
  peer: string;
}

export type OnConnection = (sock: net.Socket, info: ConnectionInfo) => void;

export interface Listener {
  /** The address actually listened on (canonical form; ephemeral ports resolved). */
  readonly address: string;
  /** Stop accepting, destroy the connections still open, and resolve when all is closed. */
  close(): Promise<void>;
}
