// Build a JavaScript kefu plugin into a component:
//   node build.mjs <source.js> <world> <out.wasm>
// The component imports WASI for stdio, random and clocks (which the host
// gives it, with nothing granted) and never wasi:http, which it does not.
import { componentize } from '@bytecodealliance/componentize-js';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [source, world, out] = process.argv.slice(2);
if (!source || !world || !out) {
  console.error('usage: node build.mjs <source.js> <world> <out.wasm>');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const { component } = await componentize({
  sourcePath: resolve(source),
  // A project made by `kefu new` carries its own wit/; this repository's
  // plugins use the one at its top.
  witPath: process.env.KEFU_WIT_DIR ?? (existsSync(resolve(here, 'wit')) ? resolve(here, 'wit') : resolve(here, '../../wit')),
  worldName: world,
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`built ${out} (${component.byteLength} bytes)`);
