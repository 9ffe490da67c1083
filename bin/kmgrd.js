#!/usr/bin/env node
import { main } from '../dist/src/cli/kmgrd.js';

main(process.argv.slice(2)).then((code) => process.exit(code));
