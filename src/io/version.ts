// kmgr's version, read from package.json: the one place it is written. Read on
// first use only, so a command that never prints it never opens the file.
import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function version(): string {
  // Compiled to dist/src/io/version.js: three levels below the package root.
  cached ??= (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cached;
}
