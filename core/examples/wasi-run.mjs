// Runs a wasm32-wasip1 program under Node's WASI, i.e. in V8, the engine Envoy uses:
//   node --no-warnings core/examples/wasi-run.mjs PROGRAM.wasm
import { WASI } from 'node:wasi';
import { readFile } from 'node:fs/promises';
const wasi = new WASI({ version: 'preview1', args: ['bench'], env: {} });
const wasm = await WebAssembly.compile(await readFile(process.argv[2]));
const instance = await WebAssembly.instantiate(wasm, wasi.getImportObject());
wasi.start(instance);
