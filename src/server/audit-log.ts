// kmgrd serve --audit-log FILE: one JSON line per API request, written before
// the reply leaves. Person and partner IDs appear only as HMACs under a key the
// operator holds (--audit-key-file): the log can be shipped to a SIEM and
// correlated ("the same person did these") without telling its readers who
// uses which partner. Fail closed: a request whose line cannot be written is
// answered 503, as Vault's audit devices do, so no use goes unaudited.
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { createHmac } from 'node:crypto';
import { ConfigError } from '../protocol/errors.js';
import { checkAccess } from '../io/permissions.js';

interface AuditEntry {
  time: string;
  method: string;
  route: string;
  status: number;
  /** served | served_over_limit | refused for fetches; ok or the error code otherwise. */
  result: string;
  remoteAddress: string;
  person: string | null;
  partner: string | null;
  durationMs: number;
}

const AUDIT_KEY_MIN_BYTES = 32;

/** Reads the operator's HMAC key. A key readable by others would let them undo the pseudonyms by guessing IDs. */
export async function readAuditKey(path: string): Promise<Uint8Array> {
  let access, raw;
  try {
    // stat, following a link: the operator names this file and may link it; the target is what others could read.
    access = await checkAccess(path, { look: 'stat', deny: 0o077, owner: 'any', kind: 'file' });
    raw = await readFile(path);
  } catch (e) {
    throw new ConfigError(`cannot read the audit key file ${path}: ${(e as Error).message}`);
  }
  if (access.problem === 'kind') throw new ConfigError(`the audit key file ${path} is not a regular file`);
  if (access.problem) throw new ConfigError(`the audit key file ${path} is readable by others (mode ${access.mode.toString(8)}); chmod 600 it`, 'unsafe_permissions');
  const key = new Uint8Array(raw.buffer, raw.byteOffset, raw.length).subarray(0, trimmedLength(raw));
  if (key.length < AUDIT_KEY_MIN_BYTES) throw new ConfigError(`the audit key file ${path} holds ${key.length} bytes; it needs at least ${AUDIT_KEY_MIN_BYTES} (make one with: openssl rand -hex 32)`);
  return key;
}

function trimmedLength(b: Uint8Array): number {
  let n = b.length;
  while (n > 0 && (b[n - 1] === 0x0a || b[n - 1] === 0x0d)) n--;
  return n;
}

export class AuditLog {
  private constructor(
    private readonly path: string,
    private readonly key: Uint8Array,
    private fh: FileHandle,
  ) {}

  static async open(path: string, key: Uint8Array): Promise<AuditLog> {
    return new AuditLog(path, key, await AuditLog.openFile(path));
  }

  private static async openFile(path: string): Promise<FileHandle> {
    try {
      return await open(path, 'a', 0o600);
    } catch (e) {
      throw new ConfigError(`cannot open the audit log ${path}: ${(e as Error).message}`);
    }
  }

  /** A stable pseudonym: the same ID always gives the same value under one key. */
  pseudonym(id: string | undefined): string | null {
    if (id === undefined) return null;
    return createHmac('sha256', this.key).update('kmgrd-audit-id\0').update(id).digest('hex').slice(0, 32);
  }

  /** Resolves once the line is written; rejects if it cannot be (the caller then fails the request). */
  async write(e: AuditEntry): Promise<void> {
    const fh = this.fh;
    // O_APPEND: one write per line, so concurrent lines never interleave.
    await fh.write(JSON.stringify(e) + '\n');
  }

  /** For logrotate: the old file has been moved away; start a new one at the same path. */
  async reopen(): Promise<void> {
    const next = await AuditLog.openFile(this.path);
    const old = this.fh;
    this.fh = next;
    // FileHandle.close waits for writes already started on the old file: they land there.
    await old.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}
