// The fetch fast path must take exactly the command lines it understands and
// hand everything else to the full parser (which gives the usual errors).
import t from 'tap';
import { parseFetch } from '../src/cli/fetch-fast.js';

t.test('accepted: the forms commander accepts for fetch', async (t) => {
  t.same(parseFetch(['fetch', 'bank-a']), { g: {}, name: 'bank-a', o: {} });
  t.same(parseFetch(['fetch', 'bank-a', '--format', 'jwk', '--force']), { g: {}, name: 'bank-a', o: { format: 'jwk', force: true } });
  t.same(parseFetch(['fetch', '--format=hex', 'bank-a', '--json']), { g: { json: true }, name: 'bank-a', o: { format: 'hex' } });
  t.same(parseFetch(['fetch', 'x', '--passphrase-file', '/p', '--home', '/h']), { g: { home: '/h' }, name: 'x', o: { passphraseFile: '/p' } });
  t.same(parseFetch(['fetch', 'x', '--passphrase-fd=3']), { g: {}, name: 'x', o: { passphraseFd: '3' } });
});

t.test('handed to the full parser: anything else', async (t) => {
  for (const argv of [
    ['fetch'],
    ['fetch', '--help'],
    ['fetch', '-h'],
    ['fetch', 'a', 'b'],
    ['fetch', 'a', '--format'],
    ['fetch', 'a', '--format', 'der'],
    ['fetch', 'a', '--format', '--force'],
    ['fetch', 'a', '--bogus'],
    ['fetch', 'a', '--force=yes'],
    ['fetch', 'a', '--passphrase-file='],
    ['register', 'a'],
    ['--json', 'fetch', 'a'],
  ]) {
    t.equal(parseFetch(argv), undefined, argv.join(' '));
  }
});
