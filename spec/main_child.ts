/**
 * Child of spec/realsize.spec.ts: `node --import tsx main_child.ts ARGS…` runs `mil ARGS…` in this process and
 * prints, as its last line of stdout, {"rc": exit status, "maxRSS": peak resident bytes of this process}: the
 * peak of the whole run, modules included — VmHWM of /proc/self/status, since getrusage's maxRSS (also
 * /usr/bin/time's) carries over the peak of the forked parent's image across exec: a test worker holding a 1.5 GB
 * model would be measured here as 1.5 GB. Elsewhere than Linux: process.resourceUsage().maxRSS.
 */
import { readFileSync } from 'node:fs';
import { main } from '../lib/cli/main.js';

const rc = await main(process.argv.slice(2));
const hwm = /VmHWM:\s*(\d+) kB/.exec(process.platform === 'linux' ? readFileSync('/proc/self/status', 'utf8') : '');
console.log(JSON.stringify({ rc, maxRSS: 1024 * (hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS) }));
process.exit(0);
