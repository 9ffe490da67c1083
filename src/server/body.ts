import type { IncomingMessage } from 'node:http';
import { KmgrError } from '../protocol/errors.js';
import { MAX_BODY_BYTES } from '../protocol/messages.js';

/** Reads the request body, refusing (413) anything over the cap without buffering it (threat 14). */
export function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > MAX_BODY_BYTES) {
    return Promise.reject(new KmgrError('body_too_large', `the request body is over ${MAX_BODY_BYTES} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        done = true;
        reject(new KmgrError('body_too_large', `the request body is over ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) {
        done = true;
        resolve(new Uint8Array(Buffer.concat(chunks, size)));
      }
    });
    req.on('error', (e) => {
      if (!done) {
        done = true;
        reject(new KmgrError('bad_request', `the request body could not be read: ${e.message}`).because(e));
      }
    });
  });
}
