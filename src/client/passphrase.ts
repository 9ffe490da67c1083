// Where a passphrase may come from (threat 13): a no-echo prompt on the
// terminal, a file, an inherited file descriptor, or KMGR_PASSPHRASE (least
// safe: the environment can leak through /proc and child processes). Never argv.
import { openSync, closeSync, readFileSync } from 'node:fs';
import { ReadStream, WriteStream } from 'node:tty';
import { readFile } from 'node:fs/promises';
import { UsageError, ConfigError, KmgrError } from '../protocol/errors.js';
import { isatty } from 'node:tty';
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
      // The same code as every other input file the user names (src/cli/input-file.ts).
      throw new KmgrError('no_input', `cannot read the passphrase file ${src.passphraseFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`).because(e);
    }
    return utf8(checkNonEmpty(firstLine(text), src.passphraseFile));
  }
  if (src.passphraseFd !== undefined) {
    const fd = Number(src.passphraseFd);
    // 0 is stdin (`printf %s "$PP" | kmgr ... --passphrase-fd 0`); 1 and 2 are outputs.
    if (!/^\d+$/.test(src.passphraseFd) || fd === 1 || fd === 2) throw new UsageError('--passphrase-fd takes 0 (stdin) or a file descriptor number of 3 or more');
    if (fd === 0 && isatty(0)) throw new UsageError('--passphrase-fd 0 reads stdin, which is a terminal; pipe the passphrase in, or leave the option out to be asked');
    let text: string;
    try {
      text = readFileSync(fd, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read the passphrase from file descriptor ${fd}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`).because(e);
    }
    return utf8(checkNonEmpty(firstLine(text), `file descriptor ${fd}`));
  }
  // An empty variable is unset (`KMGR_PASSPHRASE= kmgr ...` is how one clears it for one command).
  const env = process.env[envVar];
  if (env !== undefined && env !== '') return utf8(env);
  const first = await promptTty(prompt, 'passphrase entry');
  if (confirm) {
    const second = await promptTty('Repeat passphrase: ', 'passphrase entry');
    if (first !== second) throw new UsageError('the passphrases do not match');
  }
  return utf8(checkNonEmpty(first, 'the prompt'));
}

/** True when readPassphrase would ask on the terminal (so a wrong answer may be retried). */
export function fromPrompt(src: PassphraseSource, envVar = 'KMGR_PASSPHRASE'): boolean {
  return src.passphraseFile === undefined && src.passphraseFd === undefined && !process.env[envVar];
}

const MIN_PASSPHRASE_LENGTH = 12;

/**
 * The floor for a new passphrase (init, passwd, device import). The keystore
 * is the one thing standing between a stolen laptop and every key; scrypt slows
 * guessing, but not enough for "password" or "123456789012". Refused: fewer
 * than 12 characters, fewer than 6 different characters, only digits, or one step repeated
 * (aaaa..., abcd..., 1234...). --allow-weak-passphrase overrides it.
 */
export function checkNewPassphrase(p: Uint8Array, allowWeak: boolean | undefined): void {
  if (allowWeak) return;
  const chars = [...new TextDecoder().decode(p)];
  const why =
    chars.length < MIN_PASSPHRASE_LENGTH ? `it has ${chars.length} characters, fewer than ${MIN_PASSPHRASE_LENGTH}`
    : new Set(chars).size < 6 ? 'it uses fewer than 6 different characters'
    : chars.every((c) => c >= '0' && c <= '9') ? 'it is only digits'
    : chars.every((c, i) => i < 2 || c.codePointAt(0)! - chars[i - 1]!.codePointAt(0)! === chars[1]!.codePointAt(0)! - chars[0]!.codePointAt(0)!) ? 'it is one character sequence'
    : undefined;
  if (why) throw new UsageError(`the new passphrase is too weak: ${why}; use a few unrelated words, or --allow-weak-passphrase if you must`, 'weak_passphrase');
}

/**
 * Reads a line from /dev/tty with echo off (on for `echo`). Ctrl-C or Ctrl-D is
 * a KmgrError 'cancelled' (exit 130) naming `what` was cancelled.
 */
export function promptTty(prompt: string, what = 'entry', echo = false): Promise<string> {
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
    // Raw mode before the prompt: a key typed (or pasted) the moment the prompt shows must
    // not be echoed, nor a Ctrl-C kill the process before it can restore the terminal.
    input.setRawMode(true);
    output.write(prompt);
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') return finish(new KmgrError('cancelled', `${what} cancelled`));
        if (ch === '\u007f' || ch === '\b') {
          if (echo && value.length > 0) output.write('\b \b');
          value = value.slice(0, -1);
        } else if (ch >= ' ') {
          value += ch;
          if (echo) output.write(ch);
        }
      }
    });
  });
}
