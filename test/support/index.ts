// The one place tests take their helpers from: `import { ... } from './support/index.js'`.
// Each file here does one thing; this only gathers them.
export * from './agent.js';
export * from './audit.js';
export * from './cli.js';
export * from './cli-json.js';
export * from './clock.js';
export * from './files.js';
export * from './home.js';
export * from './keys.js';
export * from './lying-proxy.js';
export * from './net.js';
export * from './owner.js';
export * from './paths.js';
export * from './pg.js';
export * from './prng.js';
export * from './protocol.js';
export * from './pty.js';
export * from './raw-client.js';
export * from './results.js';
export * from './server.js';
export * from './sessions.js';
export * from './tools.js';
export * from './vectors.js';
