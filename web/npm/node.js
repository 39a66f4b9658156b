// Node 20+: read the WebAssembly module from the package directory (Node's
// fetch does not read file: URLs) and instantiate it synchronously.
import { readFileSync } from 'node:fs';
import { initSync } from './wasm/dpp_guard_web.js';

initSync({ module: readFileSync(new URL('./wasm/dpp_guard_web_bg.wasm', import.meta.url)) });

export * from './api.js';
