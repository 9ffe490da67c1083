// The one error codec (src/protocol/wire-error.ts) that the key server's HTTP
// replies, the agent's frames and the admin socket all use: what is sent, and
// what a receiver makes of it, including codes it does not know.
import t from 'tap';
import { ConfigError, KmgrError, UnavailableError } from '../src/protocol/errors.js';
import { asKmgrError, decodeError, encodeError, toWire } from '../src/protocol/wire-error.js';

t.test('an error travels as code, message and details, never its cause', async (t) => {
  const e = new KmgrError('terms_max_uses', 'refused by its terms', { limit: 'maxUses' }).because(new Error('secret path /x'));
  t.same(encodeError(e), { code: 'terms_max_uses', message: 'refused by its terms', details: { limit: 'maxUses' } });
  t.equal(JSON.stringify(toWire(e)), '{"error":{"code":"terms_max_uses","message":"refused by its terms","details":{"limit":"maxUses"}}}', 'the HTTP body, byte for byte');
  t.notOk(JSON.stringify(encodeError(e)).includes('secret path'), 'the cause stays home');
});

t.test('a bounded transport cuts a long message and leaves out details too long to carry', async (t) => {
  const e = new KmgrError('rekey_mismatch', 'x'.repeat(50), { missing: ['a'.repeat(40)] });
  t.same(encodeError(e, { message: 10, detailsJson: 20 }), { code: 'rekey_mismatch', message: 'x'.repeat(10) }, 'cut, and no details');
  t.same(encodeError(e, { message: 100, detailsJson: 100 }).details, { missing: ['a'.repeat(40)] }, 'details that fit are kept');
});

t.test('a received error becomes the typed error its code names, with the transport\'s wording', async (t) => {
  const e = decodeError({ code: 'unknown_key', message: 'no such key', details: { partner: 'p' } }, { unknown: () => new UnavailableError('x'), message: (m) => `peer: ${m}` });
  t.type(e, KmgrError);
  t.equal(e.code, 'unknown_key');
  t.equal(e.kind, 'not_found', 'its kind, and so its exit code, follow from the code');
  t.equal(e.message, 'peer: no such key');
  t.same(e.details, { partner: 'p' });
  const cleaned = decodeError({ code: 'usage', message: 'm', details: { a: 'b' } }, { unknown: () => new UnavailableError('x'), details: () => ({ a: 'clean' }) });
  t.same(cleaned.details, { a: 'clean' }, 'details pass through the transport\'s cleaning');
  t.equal(decodeError({ code: 'usage', message: 'm', details: null }, { unknown: () => new UnavailableError('x') }).details, undefined, 'null details are none');
});

t.test('a code this version does not know is still a failure, of the transport\'s choosing', async (t) => {
  const e = decodeError({ code: 'from_the_future', message: 'new' }, { unknown: (f) => new KmgrError('internal', f.message) });
  t.equal(e.code, 'internal');
  t.equal(e.message, 'new');
});

t.test('a decoded error may keep the lower-level error it explains', async (t) => {
  const low = new Error('socket said so');
  t.equal(decodeError({ code: 'config', message: 'm' }, { unknown: () => new UnavailableError('x'), cause: low }).cause, low);
});

t.test('a thrown value that is not ours is sent as internal, keeping it as cause', async (t) => {
  const ours = new ConfigError('ours');
  t.equal(asKmgrError(ours, 'what'), ours, 'ours as it is');
  const low = new TypeError('boom');
  const e = asKmgrError(low, 'the agent failed');
  t.equal(e.code, 'internal');
  t.equal(e.message, 'the agent failed: boom');
  t.equal(e.cause, low);
  t.equal(asKmgrError('text', 'x').message, 'x: text', 'a thrown string too');
});
