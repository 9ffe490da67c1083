// Where the code under test lives, and the passphrase every test home is made with.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/support/, three levels below the repository root.
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const KMGR = join(ROOT, 'bin', 'kmgr.js');
export const KMGRD = join(ROOT, 'bin', 'kmgrd.js');
export const PASSPHRASE = 'correct horse battery staple';
