// Connections that hold resources (threat 14). A peer that opens TLS
// connections and never sends a request holds a descriptor each; thousands
// from one address would starve everyone else. kmgrd therefore closes a
// connection that has not completed its handshake and sent a request within
// `firstRequestMs`, and holds at most `perAddress` connections per client
// address (IPv6 per /64: one host commonly holds a whole /64).
import { isIPv4, isIPv6, type Socket } from 'node:net';
import type { Server } from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface ConnectionLimits {
  /** Connections held at once per address (0: unlimited). */
  perAddress: number;
  /** How long a new connection may take to complete TLS and send its first request (ms). */
  firstRequestMs: number;
}

export const DEFAULT_CONNECTIONS_PER_ADDRESS = 256;
export const DEFAULT_FIRST_REQUEST_MS = 10_000;

/** The unit limits apply to: an IPv4 address (also IPv4-mapped), or an IPv6 /64. */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address) || !isIPv6(address)) return address;
  // Expand "::" and keep the first four groups.
  const [head = '', tail = ''] = address.split('%')[0]!.split('::');
  const h = head ? head.split(':') : [];
  const tl = address.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups: string[] = address.includes('::') ? [...h, ...Array<string>(8 - h.length - tl.length).fill('0'), ...tl] : h;
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':') + '::/64';
}

export function guardConnections(server: Server, limits: ConnectionLimits): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const key = addressKey(socket.remoteAddress ?? '');
    const n = (open.get(key) ?? 0) + 1;
    if (limits.perAddress > 0 && n > limits.perAddress) {
      // Refused before TLS: no handshake work, the descriptor released at once.
      socket.destroy();
      return;
    }
    open.set(key, n);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    });
  });
  const served = new WeakSet<object>();
  server.on('request', (req) => served.add(req.socket));
  server.on('secureConnection', (socket: TLSSocket) => {
    const timer = setTimeout(() => {
      if (!served.has(socket)) socket.destroy();
    }, limits.firstRequestMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  });
}
