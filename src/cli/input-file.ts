// Files the user names on the command line (--import, --ca, --public-key,
// --passphrase-file, ...): one way to read them, so a missing or unreadable
// input file is the same error everywhere: code no_input, exit 66 (EX_NOINPUT).
import { readFile } from 'node:fs/promises';
import { KmgrError } from '../protocol/errors.js';

function noInput(file: string, what: string, e: unknown): KmgrError {
  const code = (e as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (code ?? (e as Error).message);
  return new KmgrError('no_input', `cannot read ${what} ${file}: ${why}`);
}

export async function readInputFile(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw noInput(file, what, e);
  }
}
