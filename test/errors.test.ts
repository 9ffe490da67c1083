// The error vocabulary (src/protocol/errors.ts): a wrapped error keeps what it
// wraps for logs and debugging, and the wire form never carries it.
import t from 'tap';
import { ConfigError, KmgrError, toWire } from '../src/protocol/errors.js';
import { readIfExists } from '../src/client/files.js';

t.test('because() keeps the lower-level error as cause; toWire leaves it out', async (t) => {
  const low = Object.assign(new Error('EACCES: permission denied, open /x'), { code: 'EACCES' });
  const e = new ConfigError('cannot read /x: EACCES').because(low);
  t.equal(e.cause, low, 'the cause is kept');
  t.type(e, KmgrError, 'still the same error, with the same code');
  t.equal(e.code, 'config');
  t.same(toWire(e), { error: { code: 'config', message: 'cannot read /x: EACCES' } }, 'the wire form has code and message only');
  t.notOk(JSON.stringify(toWire(e)).includes('permission denied'), 'not even in passing');
});

t.test('a state file that cannot be read says why, and keeps the system error', async (t) => {
  // A directory where a file is expected: EISDIR, not the ENOENT that means "absent".
  const err = await readIfExists('/').then(() => undefined, (e: unknown) => e);
  t.type(err, ConfigError, 'a configuration error');
  t.equal(((err as Error).cause as NodeJS.ErrnoException | undefined)?.code, 'EISDIR', 'with the EISDIR underneath');
});
