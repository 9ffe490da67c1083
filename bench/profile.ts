// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by
// file, and inclusive time of kmgr's own functions, so that a run with
// --cpu-prof can say where kmgrd's time goes.
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  selfByFunction: { name: string; ms: number; pct: number }[];
  selfByArea: { area: string; ms: number; pct: number }[];
  inclusiveKmgr: { name: string; ms: number; pct: number }[];
}

function shortUrl(url: string): string {
  const i = url.lastIndexOf('/dist/');
  if (i >= 0) return url.slice(i + 6);
  const n = url.lastIndexOf('/node_modules/');
  if (n >= 0) return url.slice(n + 14);
  return url.replace(/^file:\/\//, '');
}

/** Coarse areas: which library or subsystem a frame belongs to. */
function area(url: string, fn: string): string {
  if (url === '') return fn.startsWith('(') ? fn : '(native)';
  const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (m) return `npm:${m[1]}`;
  const d = /\/dist\/(src\/[^/]+(?:\/[^/]+)?)\//.exec(url) ?? /\/dist\/(src\/[^/]+)/.exec(url);
  if (d) return d[1]!.replace(/\.js$/, '');
  if (url.startsWith('node:')) {
    const n = /^node:(internal\/)?([^/]+)(\/[^/]+)?/.exec(url);
    return `node:${n?.[2] ?? url}${n?.[2] === 'streams' || n?.[2] === 'http' || n?.[2] === 'http2' || n?.[2] === 'crypto' ? (n?.[3] ?? '') : ''}`;
  }
  return shortUrl(url);
}

export async function summariseProfile(file: string, top = 25): Promise<ProfileSummary> {
  const p = JSON.parse(await readFile(file, 'utf8')) as Profile;
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  let total = 0;
  for (const v of self.values()) total += v;
  const idle = [...self].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, v]) => a + v, 0);
  const busy = total - idle;

  const label = (n: ProfileNode): string => {
    const cf = n.callFrame;
    return `${cf.functionName || '(anonymous)'} ${cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : ''}`.trim();
  };
  const selfFn = new Map<string, number>();
  const selfArea = new Map<string, number>();
  for (const [id, ms] of self) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === '(idle)') continue;
    selfFn.set(label(n), (selfFn.get(label(n)) ?? 0) + ms);
    const a = area(n.callFrame.url, n.callFrame.functionName);
    selfArea.set(a, (selfArea.get(a) ?? 0) + ms);
  }

  // Inclusive time of kmgr's own functions (dist/src), counting each stack once per function.
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map<string, number>();
  for (const [id, ms] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      if (!n.callFrame.url.includes('/dist/src/')) continue;
      const l = label(n);
      if (seen.has(l)) continue;
      seen.add(l);
      incl.set(l, (incl.get(l) ?? 0) + ms);
    }
  }
  const rank = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, ms]) => ({ name, ms, pct: (100 * ms) / busy }));
  return {
    file,
    totalMs: busy,
    selfByFunction: rank(selfFn),
    selfByArea: rank(selfArea).map(({ name, ms, pct }) => ({ area: name, ms, pct })),
    inclusiveKmgr: rank(incl),
  };
}
