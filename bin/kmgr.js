#!/usr/bin/env node
// `kmgr fetch` has a fast path that skips the full command line (see src/cli/fetch-fast.ts).
const argv = process.argv.slice(2);
const fast = argv[0] === 'fetch' ? await import('../dist/src/cli/fetch-fast.js') : undefined;
const parsed = fast?.parseFetch(argv);
const code = parsed ? await fast.fastFetch(parsed) : await (await import('../dist/src/cli/kmgr.js')).main(argv);
process.exit(code);
