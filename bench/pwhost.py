"""A minimal proxy-wasm host on wasmtime (Python bindings), for measurements only.

It runs a filter module the way Envoy calls it for one HTTP request
(context create, request headers, request body, done) so the benchmarks can
time the filter's own callbacks in a real Wasm runtime and read the VM's
linear memory size. It implements the host calls a request-path filter
uses; every other host call answers `Unimplemented`. The project's
functional harness (issue 3) is the place for behaviour tests; this file
only has to be faithful enough to make the filter do its real work.
"""

import struct
import time

import wasmtime

OK, NOT_FOUND, BAD_ARGUMENT, EMPTY, UNIMPLEMENTED = 0, 1, 2, 7, 12
# proxy-wasm buffer and map types
REQUEST_BODY, RESPONSE_BODY, PLUGIN_CONFIGURATION, VM_CONFIGURATION = 0, 1, 7, 6
REQUEST_HEADERS, RESPONSE_HEADERS = 0, 2
PAGE = 65536


class Host:
    def __init__(self, wasm_path, env=(), engine=None):
        self.engine = engine or wasmtime.Engine()
        self.module = wasmtime.Module.from_file(self.engine, wasm_path)
        self.store = wasmtime.Store(self.engine)
        wasi = wasmtime.WasiConfig()
        wasi.env = list(env)
        self.store.set_wasi(wasi)
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        self.logs = []
        self.local_reply = None
        self.plugin_config = b""
        self.buffers = {}
        self.maps = {REQUEST_HEADERS: [], RESPONSE_HEADERS: []}
        self.properties = {}
        for imp in self.module.imports:
            if imp.module != "env":
                continue
            impl = getattr(self, "h_" + imp.name, None)
            fn = impl if impl else self._unimplemented(imp.type)
            linker.define_func("env", imp.name, imp.type, fn, access_caller=True)
        self.instance = linker.instantiate(self.store, self.module)
        ex = self.instance.exports(self.store)
        self.memory = ex["memory"]
        self.ex = ex

    # ---- guest memory -----------------------------------------------------------
    def _mem(self, caller):
        return caller["memory"] if caller is not None else self.memory

    def read(self, caller, ptr, n):
        store = caller if caller is not None else self.store
        return bytes(self._mem(caller).read(store, ptr, ptr + n)) if n else b""

    def write(self, caller, ptr, data):
        store = caller if caller is not None else self.store
        self._mem(caller).write(store, data, ptr)

    def give(self, caller, data, ret_ptr, ret_size):
        """Copy `data` into guest memory allocated by the guest; return its address."""
        store = caller if caller is not None else self.store
        alloc = caller["proxy_on_memory_allocate"] if caller is not None else self.ex["proxy_on_memory_allocate"]
        p = alloc(store, max(len(data), 1))
        self.write(caller, p, data)
        self.write(caller, ret_ptr, struct.pack("<I", p))
        self.write(caller, ret_size, struct.pack("<I", len(data)))
        return OK

    def memory_bytes(self):
        return self.memory.size(self.store) * PAGE

    def _unimplemented(self, ty):
        results = list(ty.results)

        def fn(caller, *args):
            return UNIMPLEMENTED if results else None

        return fn

    # ---- host calls -------------------------------------------------------------
    def h_proxy_log(self, caller, level, ptr, n):
        self.logs.append((level, self.read(caller, ptr, n).decode("utf-8", "replace")))
        return OK

    def h_proxy_get_current_time_nanoseconds(self, caller, ret):
        self.write(caller, ret, struct.pack("<Q", time.time_ns()))
        return OK

    def h_proxy_set_tick_period_milliseconds(self, caller, ms):
        return OK

    def h_proxy_set_effective_context(self, caller, ctx):
        return OK

    def h_proxy_continue_stream(self, caller, kind):
        return OK

    def h_proxy_set_property(self, caller, p, n, vp, vn):
        self.properties[self.read(caller, p, n)] = self.read(caller, vp, vn)
        return OK

    def h_proxy_get_property(self, caller, p, n, ret, ret_n):
        key = self.read(caller, p, n)
        if key in self.properties:
            return self.give(caller, self.properties[key], ret, ret_n)
        return NOT_FOUND

    def h_proxy_get_buffer_bytes(self, caller, kind, start, size, ret, ret_n):
        data = self.plugin_config if kind == PLUGIN_CONFIGURATION else self.buffers.get(kind)
        if data is None:
            return NOT_FOUND
        # Sizes are u32 on the wire; the SDK asks for "everything" with u32::MAX.
        start, size = start & 0xFFFFFFFF, size & 0xFFFFFFFF
        chunk = data[start:start + size]
        if not chunk:
            return EMPTY
        return self.give(caller, chunk, ret, ret_n)

    def h_proxy_set_buffer_bytes(self, caller, kind, start, size, p, n):
        data = self.buffers.get(kind, b"")
        start, size = start & 0xFFFFFFFF, size & 0xFFFFFFFF
        new = self.read(caller, p, n)
        self.buffers[kind] = data[:start] + new + data[start + size:]
        return OK

    def _map(self, kind):
        return self.maps.setdefault(kind, [])

    def h_proxy_get_header_map_value(self, caller, kind, kp, kn, ret, ret_n):
        key = self.read(caller, kp, kn).decode().lower()
        for k, v in self._map(kind):
            if k == key:
                return self.give(caller, v.encode(), ret, ret_n)
        return NOT_FOUND

    def h_proxy_get_header_map_pairs(self, caller, kind, ret, ret_n):
        pairs = self._map(kind)
        out = struct.pack("<I", len(pairs))
        for k, v in pairs:
            out += struct.pack("<II", len(k), len(v))
        for k, v in pairs:
            out += k.encode() + b"\0" + v.encode() + b"\0"
        return self.give(caller, out, ret, ret_n)

    def h_proxy_replace_header_map_value(self, caller, kind, kp, kn, vp, vn):
        key, val = self.read(caller, kp, kn).decode().lower(), self.read(caller, vp, vn).decode()
        m = [(k, v) for k, v in self._map(kind) if k != key]
        m.append((key, val))
        self.maps[kind] = m
        return OK

    def h_proxy_add_header_map_value(self, caller, kind, kp, kn, vp, vn):
        self._map(kind).append((self.read(caller, kp, kn).decode().lower(), self.read(caller, vp, vn).decode()))
        return OK

    def h_proxy_remove_header_map_value(self, caller, kind, kp, kn):
        key = self.read(caller, kp, kn).decode().lower()
        self.maps[kind] = [(k, v) for k, v in self._map(kind) if k != key]
        return OK

    def h_proxy_define_metric(self, caller, kind, np, nn, ret_id):
        self.metrics = getattr(self, "metrics", {})
        name = self.read(caller, np, nn).decode()
        mid = self.metrics.setdefault(name, len(self.metrics) + 1)
        self.write(caller, ret_id, struct.pack("<I", mid))
        return OK

    def h_proxy_increment_metric(self, caller, mid, offset):
        return OK

    def h_proxy_record_metric(self, caller, mid, value):
        return OK

    def h_proxy_get_metric(self, caller, mid, ret):
        self.write(caller, ret, struct.pack("<Q", 0))
        return OK

    def h_proxy_send_local_response(self, caller, status, dp, dn, bp, bn, hp, hn, grpc):
        self.local_reply = (status, self.read(caller, bp, bn))
        return OK

    # ---- lifecycle --------------------------------------------------------------
    ROOT = 1

    def call(self, name, *args):
        return self.ex[name](self.store, *args)

    def start(self, root_id, configuration):
        """_initialize, root context, on_vm_start, on_configure. Returns on_configure's answer."""
        if "_initialize" in self.ex:
            self.call("_initialize")
        self.properties[b"plugin_root_id"] = root_id.encode()
        self.plugin_config = configuration
        self.call("proxy_on_context_create", self.ROOT, 0)
        self.call("proxy_on_vm_start", self.ROOT, 0)
        self._next = self.ROOT + 1
        return bool(self.call("proxy_on_configure", self.ROOT, len(configuration)))

    def request(self, headers, body):
        """One request through on_request_headers and on_request_body (whole body).

        Returns (body the filter hands upstream, seconds spent in on_request_body).
        """
        ctx = self._next
        self._next += 1
        self.local_reply = None
        self.maps[REQUEST_HEADERS] = [(k.lower(), v) for k, v in headers]
        self.buffers[REQUEST_BODY] = body
        self.call("proxy_on_context_create", ctx, self.ROOT)
        self.call("proxy_on_request_headers", ctx, len(headers), 0)
        t0 = time.perf_counter_ns()
        self.call("proxy_on_request_body", ctx, len(body), 1)
        dt = (time.perf_counter_ns() - t0) / 1e9
        self.call("proxy_on_done", ctx)
        self.call("proxy_on_log", ctx)
        self.call("proxy_on_delete", ctx)
        return self.buffers.get(REQUEST_BODY), dt


def wasmtime_version():
    try:
        from importlib.metadata import version

        return version("wasmtime")
    except Exception:  # noqa: BLE001 - only a label
        return "?"
