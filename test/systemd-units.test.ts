// The shipped systemd units: they load (systemd-analyze verify), keep their
// hardening, and their sandbox scores as safe (systemd-analyze security).
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KMGRD, ROOT, tempDir } from './support/index.js';

const DIR = join(ROOT, 'contrib', 'systemd');
const UNITS = ['kmgrd.service', 'kmgrd-check-terms.service', 'kmgrd-check-terms.timer', 'kmgrd-backup.service', 'kmgrd-backup.timer'];

function hasSystemdAnalyze(): boolean {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

t.test('every unit is shipped and every service keeps the hardening', async (t) => {
  t.same((await readdir(DIR)).sort(), [...UNITS].sort());
  for (const u of UNITS.filter((n) => n.endsWith('.service'))) {
    const text = await readFile(join(DIR, u), 'utf8');
    const has = (line: string): boolean => text.split('\n').some((l) => l.trim() === line);
    for (const line of ['User=kmgrd', 'NoNewPrivileges=yes', 'CapabilityBoundingSet=', 'ProtectSystem=strict', 'PrivateTmp=yes', 'LimitCORE=0', 'UMask=0077']) {
      t.ok(has(line), `${u}: ${line}`);
    }
    t.match(text, /^ReadWritePaths=\/var\/lib\/kmgrd(\s|$)/m, `${u}: the data directory is the writable path`);
    t.match(text, /^Documentation=man:kmgrd\(8\)$/m, `${u}: points to kmgrd(8)`);
  }
  const main = await readFile(join(DIR, 'kmgrd.service'), 'utf8');
  t.match(main, /^LoadCredential=tls-key:/m, 'the TLS key comes by LoadCredential');
  t.match(main, /--tls-key %d\/tls-key/, 'and kmgrd reads it from the credentials directory');
  t.match(main, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m, 'reload is SIGHUP');
});

t.test('systemd-analyze verify accepts the units; security scores them OK or better', { skip: hasSystemdAnalyze() ? false : 'systemd-analyze is not installed' }, async (t) => {
  // verify checks that ExecStart's program exists: point it at this checkout's kmgrd.
  const dir = await tempDir(t, 'kmgr-units-');
  for (const u of UNITS) {
    if (u.endsWith('.service')) await writeFile(join(dir, u), (await readFile(join(DIR, u), 'utf8')).replaceAll('/usr/bin/kmgrd', KMGRD));
    else await copyFile(join(DIR, u), join(dir, u));
  }
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...UNITS.map((u) => join(dir, u))], { encoding: 'utf8' });
  t.equal(r.status, 0, `systemd-analyze verify: ${r.stderr.trim() || 'clean'}`);
  t.equal(r.stderr.trim(), '', 'no warnings');
  for (const u of UNITS.filter((n) => n.endsWith('.service'))) {
    const s = spawnSync('systemd-analyze', ['security', '--offline=yes', join(dir, u)], { encoding: 'utf8' });
    const m = /Overall exposure level for \S+: ([\d.]+)/.exec(s.stdout);
    if (!m) {
      t.comment(`${u}: this systemd-analyze has no offline security check (${s.stderr.trim().split("\n")[0]})`);
      continue;
    }
    t.ok(Number(m[1]) <= 2, `${u}: exposure ${m[1]} (2.0 or less is "OK" or "SAFE")`);
  }
});
