// The message format between the server and its verify workers.
export interface VerifyJob {
  key: Uint8Array; // raw Ed25519 public key, 32 bytes
  payload: Uint8Array;
  signature: Uint8Array; // 64 bytes
}

/**
 * A batch travels as one transferred buffer (structured cloning three arrays per
 * job cost more than it saved): per job, 32 key bytes, 64 signature bytes, a
 * 4-byte payload length and the payload.
 */
export function packJobs(jobs: VerifyJob[]): ArrayBuffer {
  let size = 0;
  for (const j of jobs) size += 32 + 64 + 4 + j.payload.length;
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  let o = 0;
  for (const j of jobs) {
    buf.set(j.key.subarray(0, 32), o);
    buf.set(j.signature.length === 64 ? j.signature : new Uint8Array(64), o + 32);
    view.setUint32(o + 96, j.payload.length);
    buf.set(j.payload, o + 100);
    o += 100 + j.payload.length;
  }
  return buf.buffer;
}
