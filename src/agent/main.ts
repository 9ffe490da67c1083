// The kmgr agent process, spawned detached by `kmgr agent start` with the boot
// pipe as fd 3 (see server.ts). Not meant to be run by hand.
import { exitAgent, runAgent } from './server.js';
import { EXIT } from '../cli/exit-codes.js';

runAgent().catch(() => exitAgent(EXIT.SOFTWARE));
