#!/usr/bin/env node
// The `fanout` executable (package.json "bin"): the command line of src/cli/main.ts.
import { main } from './main.ts';

const interrupted = new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
process.exitCode = await main(process.argv.slice(2), { out: (s) => console.log(s), env: process.env, interrupted });
// A finished command leaves nothing to wait for (SDK sockets, the SIGINT listener).
process.exit();
