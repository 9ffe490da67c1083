// Loopback ports and listeners for tests that need a server that is not kmgrd.
import type { Test } from 'tap';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** A port on 127.0.0.1 that nobody listens on now (it was bound, then released): free to give a server, or closed to dial. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A TCP listener that only counts connections (and drops them): proves a command did not contact the server. */
export async function countingListener(t: Test): Promise<{ url: string; count: () => number }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const s: Server = createServer((sock) => {
    n++;
    sockets.add(sock);
    sock.on('error', () => undefined);
    sock.destroy();
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return { url: `https://127.0.0.1:${(s.address() as AddressInfo).port}`, count: () => n };
}
