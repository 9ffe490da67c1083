// The kmgr agent process, spawned detached by `kmgr agent start` with the boot
// pipe as fd 3 (see server.ts). Not meant to be run by hand.
import { runAgent } from './server.js';

runAgent().catch(() => process.exit(70));
