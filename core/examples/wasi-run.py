"""Runs a wasm32-wasip1 program in wasmtime (the Python bindings of bench/requirements.txt):
    .venv/bin/python core/examples/wasi-run.py PROGRAM.wasm
The wasmtime counterpart of wasi-run.mjs (V8 through Node's WASI)."""
import sys

import wasmtime

engine = wasmtime.Engine()
linker = wasmtime.Linker(engine)
linker.define_wasi()
store = wasmtime.Store(engine)
wasi = wasmtime.WasiConfig()
wasi.argv = ["bench"]
wasi.inherit_stdout()
wasi.inherit_stderr()
store.set_wasi(wasi)
module = wasmtime.Module.from_file(engine, sys.argv[1])
instance = linker.instantiate(store, module)
instance.exports(store)["_start"](store)
