// Where a passphrase may come from (threat 13): a no-echo prompt on the
// terminal, a file, an inherited file descriptor, or KMGR_PASSPHRASE (least
// safe: the environment can leak through /proc and child processes). Never argv.
import { openSync, closeSync, readFileSync } from 'node:fs';
import { ReadStream, WriteStream } from 'node:tty';
import { readFile } from 'node:fs/promises';
import { UsageError, ConfigError } from '../protocol/errors.js';
import { utf8 } from '../crypto/bytes.js';

export interface PassphraseSource {
  passphraseFile?: string;
  passphraseFd?: string;
}

/** A file or descriptor holds the passphrase on its first line. */
const firstLine = (s: string): string => s.split(/\r?\n/, 1)[0] ?? '';

function checkNonEmpty(p: string, from: string): string {
  if (p.length === 0) throw new UsageError(`the passphrase from ${from} is empty`);
  return p;
}

export async function readPassphrase(src: PassphraseSource, prompt: string, confirm = false, envVar = 'KMGR_PASSPHRASE'): Promise<Uint8Array> {
  if (src.passphraseFile !== undefined && src.passphraseFd !== undefined) {
    throw new UsageError('give --passphrase-file or --passphrase-fd, not both');
  }
  if (src.passphraseFile !== undefined) {
    let text: string;
    try {
      text = await readFile(src.passphraseFile, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read the passphrase file ${src.passphraseFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`).because(e);
    }
    return utf8(checkNonEmpty(firstLine(text), src.passphraseFile));
  }
  if (src.passphraseFd !== undefined) {
    const fd = Number(src.passphraseFd);
    if (!/^\d+$/.test(src.passphraseFd) || fd < 3) throw new UsageError('--passphrase-fd takes a file descriptor number of 3 or more');
    let text: string;
    try {
      text = readFileSync(fd, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read the passphrase from file descriptor ${fd}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`).because(e);
    }
    return utf8(checkNonEmpty(firstLine(text), `file descriptor ${fd}`));
  }
  const env = process.env[envVar];
  if (env !== undefined) return utf8(checkNonEmpty(env, envVar));
  const first = await promptTty(prompt);
  if (confirm) {
    const second = await promptTty('Repeat passphrase: ');
    if (first !== second) throw new UsageError('the passphrases do not match');
  }
  return utf8(checkNonEmpty(first, 'the prompt'));
}

/** Reads a line from /dev/tty with echo off. */
export function promptTty(prompt: string): Promise<string> {
  let fd: number;
  try {
    fd = openSync('/dev/tty', 'r+');
  } catch {
    return Promise.reject(
      new UsageError('no terminal to ask for the passphrase on; use --passphrase-file, --passphrase-fd or KMGR_PASSPHRASE'),
    );
  }
  const input = new ReadStream(fd);
  const output = new WriteStream(fd);
  return new Promise<string>((resolve, reject) => {
    let value = '';
    const finish = (err?: Error): void => {
      input.setRawMode(false);
      input.removeAllListeners('data');
      input.pause();
      output.write('\n');
      input.destroy();
      try {
        closeSync(fd);
      } catch {
        /* already closed by the stream */
      }
      if (err) reject(err);
      else resolve(value);
    };
    output.write(prompt);
    input.setRawMode(true);
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') return finish(new UsageError('passphrase entry cancelled'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch >= ' ') value += ch;
      }
    });
  });
}
