// Browsers and bundlers: fetch and instantiate the WebAssembly module next
// to this file (top-level await), then expose the API.
import init from './wasm/dpp_guard_web.js';

await init({ module_or_path: new URL('./wasm/dpp_guard_web_bg.wasm', import.meta.url) });

export * from './api.js';
