// Writing results. Ordinary output goes to stdout; key material only through fetch.
export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function warn(text: string): void {
  process.stderr.write(`kmgr: warning: ${text}\n`);
}

export function info(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** Resolves once everything written to stdout has been flushed (pipes are async). */
export function flushStdout(): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.writableLength === 0) resolve();
    else process.stdout.write('', () => resolve());
  });
}
