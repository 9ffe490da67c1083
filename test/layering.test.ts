// The import rules of docs/architecture.md, checked against every module in
// src/: the rules block there is the only copy, read here, so the page and the
// check cannot drift. A broken rule names the importing file and the import.
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { ROOT } from './support/index.js';

const SRC = join(ROOT, 'src');

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sourceFiles(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Static imports, re-exports and dynamic import() calls with a literal specifier, type-only ones included. */
const IMPORT = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;

interface Edge {
  from: string; // src-relative, e.g. 'crypto/blob.ts'
  spec: string;
  /** src-relative module for our own imports; undefined for packages. */
  to: string | undefined;
}

function edgesOf(file: string): Edge[] {
  const from = relative(SRC, file).split(sep).join('/');
  const text = readFileSync(file, 'utf8');
  const edges: Edge[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = (m[1] ?? m[2])!;
    if (spec.startsWith('.')) {
      const to = relative(SRC, resolve(dirname(file), spec.replace(/\.js$/, '.ts'))).split(sep).join('/');
      edges.push({ from, spec, to });
    } else edges.push({ from, spec, to: undefined });
  }
  return edges;
}

function parseRules(): Map<string, string[]> {
  const doc = readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8');
  const block = /```rules\n([\s\S]*?)```/.exec(doc);
  if (!block) throw new Error('docs/architecture.md has no ```rules block');
  const rules = new Map<string, string[]>();
  for (const line of block[1]!.split('\n')) {
    const bare = line.replace(/#.*/, '').trim();
    if (!bare) continue;
    const [folder, ...allowed] = bare.split(/\s+/);
    rules.set(folder!, allowed.filter((a) => a !== '-'));
  }
  return rules;
}

const packageName = (spec: string): string => (spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
const folderOf = (module: string): string => module.split('/')[0]!;

function allowedBy(entry: string, e: Edge): boolean {
  if (e.to !== undefined) return entry.endsWith('.ts') ? entry === e.to : !entry.includes('/') && !entry.startsWith('@') && entry === folderOf(e.to);
  const pkg = packageName(e.spec);
  if (entry.endsWith('/*')) return pkg.startsWith(entry.slice(0, -1));
  return entry === pkg;
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((f) => [relative(SRC, f).split(sep).join('/'), edgesOf(f)]));

t.test('every import follows the rules of docs/architecture.md', async (t) => {
  const rules = parseRules();
  t.ok(rules.size >= 9, 'the rules block names every folder');
  const broken: string[] = [];
  for (const [module, edges] of graph) {
    const folder = folderOf(module);
    const allowed = rules.get(folder);
    if (!allowed) {
      broken.push(`${module}: its folder src/${folder}/ has no rule in docs/architecture.md`);
      continue;
    }
    for (const e of edges) {
      if (e.spec.startsWith('node:')) continue;
      if (e.to !== undefined && folderOf(e.to) === folder) continue;
      const denied = allowed.some((a) => a.startsWith('!') && allowedBy(a.slice(1), e));
      if (denied || !allowed.some((a) => !a.startsWith('!') && allowedBy(a, e))) broken.push(`${module} imports ${e.spec}`);
    }
  }
  t.same(broken, [], 'no import breaks a rule');
});

t.test('our own imports name modules that exist', async (t) => {
  const missing = [...graph.values()].flat().filter((e) => e.to !== undefined && !graph.has(e.to)).map((e) => `${e.from} imports ${e.spec}`);
  t.same(missing, [], 'the import scanner resolved every relative import (so no import escaped the check)');
});

t.test('there are no import cycles in src/', async (t) => {
  // Tarjan's strongly connected components over our own imports.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const e of graph.get(v) ?? []) {
      const w = e.to;
      if (w === undefined || !graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) cycles.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  t.same(cycles, [], 'no group of modules imports itself round');
});

t.test('the checker itself catches a broken rule', async (t) => {
  // Guard against a check that cannot fail: a crypto module importing the client must be refused.
  const rules = parseRules();
  const fake: Edge = { from: 'crypto/x.ts', spec: '../client/session.js', to: 'client/session.ts' };
  t.notOk(rules.get('crypto')!.some((a) => allowedBy(a, fake)), 'crypto -> client is refused');
  const pkg: Edge = { from: 'client/x.ts', spec: 'level', to: undefined };
  t.notOk(rules.get('client')!.some((a) => allowedBy(a, pkg)), 'client -> level is refused');
  const sealing: Edge = { from: 'server/x.ts', spec: '../crypto/blob.js', to: 'crypto/blob.ts' };
  t.ok(rules.get('server')!.includes('!crypto/blob.ts') && allowedBy('crypto/blob.ts', sealing), 'the server is denied the sealing code');
  const scoped: Edge = { from: 'crypto/x.ts', spec: '@noble/curves/ed25519.js', to: undefined };
  t.ok(rules.get('crypto')!.some((a) => allowedBy(a, scoped)), '@noble/* admits a scoped package');
  t.ok(edgesOf(join(SRC, 'cli', 'session.ts')).some((e) => e.spec === '../agent/client.js'), 'dynamic import() calls are seen');
});
