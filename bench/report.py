"""Turns raw wrk runs into the results JSON, the markdown table and the chart."""

import json
import os
import statistics

# (key, column, higher is better). `proxy_cpu_us` is the CPU time the Envoy
# under test used per request (bench/run.py `measured_run`): the cost itself,
# which the hypervisor's steal time does not blur the way it blurs req/s.
FIGURES = [("rps", "req/s", True), ("p50_us", "p50 µs", False), ("p99_us", "p99 µs", False),
           ("proxy_cpu_us", "proxy CPU µs/req", False)]


def _median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def build(configs, results, checks, rss, host_calls, pooling, upstream_direct, profiles, baselines, settings, machine, date):
    rows = []
    for cfg in configs:
        row = {"key": cfg.key, "label": cfg.label, "check": checks.get(cfg.key) or "ok",
               "envoy_rss_kib": rss.get(cfg.key), "wasm_calls_per_request": host_calls.get(cfg.key),
               "upstream_pooling": pooling.get(cfg.key),
               "profiles": {}}
        for pname, conns in profiles:
            runs = results.get(cfg.key, {}).get(pname, [])
            if not runs:
                continue
            med = {k: _median(runs, k) for k, _, _ in FIGURES}
            row["profiles"][pname] = {
                "connections": conns,
                "median": med,
                "rps_min": min(r["rps"] for r in runs),
                "rps_max": max(r["rps"] for r in runs),
                "errors": sum(r["errors"] for r in runs),
                "steal_pct_max": max((r["steal_pct"] for r in runs if r.get("steal_pct") is not None),
                                     default=None),
                "runs": runs,
            }
        rows.append(row)
    by_key = {r["key"]: r for r in rows}
    for row in rows:
        for pname, prof in row["profiles"].items():
            ratios = {}
            for fig, _, _ in FIGURES:
                ratios[fig] = {}
                for b in baselines:
                    base = by_key.get(b, {}).get("profiles", {}).get(pname)
                    v, bv = prof["median"][fig], base["median"][fig] if base else None
                    ratios[fig][b] = round(v / bv, 3) if v and bv else None
            prof["ratios"] = ratios
    up = {
        "rps_median": _median(upstream_direct, "rps"),
        "p50_us_median": _median(upstream_direct, "p50_us"),
        "runs": upstream_direct,
    }
    return {"date": date, "machine": machine, "settings": settings, "baselines": baselines,
            "configs": rows, "upstream_direct": up}


def _fmt(v, fig):
    if v is None:
        return "–"
    return f"{v:,.1f}" if fig == "proxy_cpu_us" else f"{v:,.0f}"


def _ratio(x):
    return "–" if x is None else f"{x:.2f}"


def markdown(doc):
    s = doc["settings"]
    m = doc["machine"]
    lines = [
        f"# dpp-guard benchmark results{' (SMOKE RUN: too short to quote)' if s['smoke'] else ''}",
        "",
        f"{doc['date']} · git {m.get('git')} · {m.get('cpu')} × {m.get('cpus')} · Envoy {m.get('envoy')} · {m.get('wrk')}",
        "",
        f"Request: POST of a {s['request_body_bytes']}-byte SP-API order (JSON). Envoy under test "
        f"`--concurrency {s['envoy_concurrency']}`, wrk `-t{s['wrk_threads']}`, CPU pinning {s['cpu_pinning']}. "
        f"Upstream: {s['upstream']}. {s['reps']} interleaved repetitions × {s['seconds_per_run']} s per "
        f"configuration and profile (after {s['warmup_seconds']} s warm-up); each figure is the median over "
        "repetitions. Ratios: figure of the row ÷ figure of (a), (b), (c). For req/s higher is better; for "
        "latency and proxy CPU lower is better. Proxy CPU µs/req is the user + system time of the Envoy "
        "under test per request (all its threads), which leaves out the time the hypervisor stole; "
        "steal % is the largest share of the proxy's core stolen during one of the row's runs: where it is "
        "high, req/s understates the row and the CPU column is the steadier figure.",
        "",
    ]
    for pname in ("load", "single"):
        prof_rows = [r for r in doc["configs"] if pname in r["profiles"]]
        if not prof_rows:
            continue
        conns = prof_rows[0]["profiles"][pname]["connections"]
        title = "Throughput and latency under load" if pname == "load" else "Latency of a single client"
        lines += [f"## {title} ({conns} connection{'s' if conns > 1 else ''})", ""]
        head = ["", "configuration"]
        for _, name, _ in FIGURES:
            head += [name] + [f"÷{b}" for b in doc["baselines"]]
        head += ["req/s min–max", "steal % max", "errors"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in prof_rows:
            p = r["profiles"][pname]
            cells = [f"({r['key']})", r["label"]]
            for fig, _, _ in FIGURES:
                cells.append(_fmt(p["median"][fig], fig))
                cells += [_ratio(p["ratios"][fig][b]) for b in doc["baselines"]]
            steal = p.get("steal_pct_max")
            cells += [f"{p['rps_min']:,.0f}–{p['rps_max']:,.0f}",
                      "–" if steal is None else f"{steal:.0f}", str(p["errors"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    targets = target_lines(doc)
    if targets:
        lines += ["## Targets, under load", "",
                  "Measured as the issues define it (req/s of the row ÷ req/s of the baseline) and as the "
                  "same ratio of proxy CPU per request (baseline ÷ row: the req/s ratio a proxy whose "
                  "core is never stolen would show).", "",
                  "| target | req/s ratio | met | CPU ratio | met |", "|---|---|---|---|---|"]
        lines += targets
        lines.append("")
    up = doc["upstream_direct"]
    if up["rps_median"]:
        lines += [
            f"Upstream alone (wrk straight at the direct_response Envoy, which shares CPU "
            f"{doc['settings']['cpu_pinning'].get('upstream')} with wrk, 16 connections): "
            f"{up['rps_median']:,.0f} req/s, p50 {up['p50_us_median']:,.0f} µs — the "
            "upstream is not the bottleneck when this exceeds every row above.",
            "",
        ]
    hc = [r for r in doc["configs"] if r.get("wasm_calls_per_request") and r["wasm_calls_per_request"]["vm_callbacks"]]
    if hc:
        lines += ["Proxy-wasm crossings per request (Envoy wasm trace log, 20 requests on one keep-alive connection): "
                  + ", ".join(f"({r['key']}) {r['wasm_calls_per_request']['host_calls']:g} host calls + "
                              f"{r['wasm_calls_per_request']['vm_callbacks']:g} VM callbacks" for r in hc), ""]
    pool = [(r["key"], r["upstream_pooling"]) for r in doc["configs"]
            if r.get("upstream_pooling") and r["upstream_pooling"].get("requests")]
    if pool:
        lines += ["Upstream connections opened / requests sent upstream (connection reuse): "
                  + ", ".join(f"({k}) {p['connections']:,}/{p['requests']:,}" for k, p in pool), ""]
    rss = [(r["key"], r["envoy_rss_kib"]) for r in doc["configs"] if r.get("envoy_rss_kib")]
    if rss:
        lines += ["Envoy resident memory after the run (MiB): "
                  + ", ".join(f"({k}) {v / 1024:.0f}" for k, v in rss), ""]
    bad = [r for r in doc["configs"] if r["check"] != "ok"]
    for r in bad:
        lines.append(f"**({r['key']}) {r['label']} not measured: its check failed: {r['check']}**")
    lines.append(f"Wall time: {s['wall_seconds']} s.")
    return "\n".join(lines) + "\n"


# (row, baseline, minimum ratio under load, what the issue asks)
TARGETS = [
    ("e", "b", 0.97, "unprotected route ≥ 0.97 × null filter (b)"),
    ("f", "d", 2.5, "protected 4 KiB order, all preset fields encrypted ≥ 2.5 × naive (d)"),
    ("f", "c", 1.2, "protected 4 KiB order ≥ 1.2 × parse-and-serialize floor (c)"),
    # issue 11: unprotected traffic nearly free
    ("e", "b", 0.95, "issue 11: unprotected route (e) ≥ 0.95 × null filter (b)"),
    ("i", "b", 0.85, "issue 11: access records on (i) ≥ 0.85 × null filter (b)"),
    # issue 18: protected traffic faster than the naive filter
    ("f", "d", 1.2, "issue 18: encrypt (f) ≥ 1.2 × naive (d)"),
    ("g", "d", 1.2, "issue 18: decrypt (g) ≥ 1.2 × naive (d)"),
    ("f", "d", 2.0, "issue 18 goal: encrypt (f) ≥ 2 × naive (d)"),
    ("f2", "d", 1.2, "issue 18: encrypt, granularity object (f2) ≥ 1.2 × naive (d)"),
    ("g2", "d", 1.2, "issue 18: decrypt, granularity object (g2) ≥ 1.2 × naive (d)"),
]


def target_lines(doc):
    by_key = {r["key"]: r for r in doc["configs"]}
    out = []
    for row, base, minimum, text in TARGETS:
        r, b = by_key.get(row), by_key.get(base)
        if not r or not b or "load" not in r["profiles"] or "load" not in b["profiles"]:
            out.append(f"| {text} | not measured (configuration ({row}) not in this run) | – | – | – |")
            continue
        rm, bm = r["profiles"]["load"]["median"], b["profiles"]["load"]["median"]
        ratio = rm["rps"] / bm["rps"]
        cells = [text, f"{ratio:.2f}", "yes" if ratio >= minimum else "**no**"]
        if rm.get("proxy_cpu_us") and bm.get("proxy_cpu_us"):
            cpu_ratio = bm["proxy_cpu_us"] / rm["proxy_cpu_us"]
            cells += [f"{cpu_ratio:.2f}", "yes" if cpu_ratio >= minimum else "**no**"]
        else:
            cells += ["–", "–"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def chart(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["configs"] if "load" in r["profiles"]]
    if not rows:
        return
    labels = [f"({r['key']}) {r['label']}" for r in rows]
    y = list(range(len(rows)))[::-1]
    has_single = any("single" in r["profiles"] for r in rows)
    ncols = 3 if has_single else 2
    fig, axes = plt.subplots(1, ncols, figsize=(6 + 4.5 * ncols, 0.55 * len(rows) + 2.2), sharey=True)

    ax = axes[0]
    med = [r["profiles"]["load"]["median"]["rps"] for r in rows]
    lo = [m - r["profiles"]["load"]["rps_min"] for m, r in zip(med, rows)]
    hi = [r["profiles"]["load"]["rps_max"] - m for m, r in zip(med, rows)]
    ax.barh(y, med, xerr=[lo, hi], color="#4c72b0", capsize=3)
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    conns = rows[0]["profiles"]["load"]["connections"]
    ax.set_title(f"requests/s, {conns} connections (median, min–max)")
    for yi, m, r in zip(y, med, rows):
        ra = r["profiles"]["load"]["ratios"]["rps"].get("a")
        # Right of the error bar, so the label never sits on it.
        ax.text(max(m, r["profiles"]["load"]["rps_max"]), yi, f"  {m:,.0f}" + (f" ({ra:.2f}×a)" if ra else ""),
                va="center", fontsize=8)
    ax.margins(x=0.35)

    def lat(ax, pname, title):
        p50 = [r["profiles"].get(pname, {}).get("median", {}).get("p50_us") or 0 for r in rows]
        p99 = [r["profiles"].get(pname, {}).get("median", {}).get("p99_us") or 0 for r in rows]
        h = 0.38
        ax.barh([v + h / 2 for v in y], p50, height=h, label="p50", color="#55a868")
        ax.barh([v - h / 2 for v in y], p99, height=h, label="p99", color="#c44e52")
        for yi, a, b in zip(y, p50, p99):
            ax.text(a, yi + h / 2, f" {a:,.0f}", va="center", fontsize=7)
            ax.text(b, yi - h / 2, f" {b:,.0f}", va="center", fontsize=7)
        ax.set_title(title)
        ax.set_xlabel("µs")
        ax.legend(loc="upper right", fontsize=8)
        ax.margins(x=0.2)

    lat(axes[1], "load", f"latency under load ({conns} connections)")
    if has_single:
        lat(axes[2], "single", "latency, 1 connection")
    s = doc["settings"]
    fig.suptitle(
        f"dpp-guard in Envoy {doc['machine'].get('envoy', '')}: {s['request_body_bytes']}-byte order, "
        f"{s['reps']}×{s['seconds_per_run']} s interleaved, medians"
        + (" — SMOKE RUN" if s["smoke"] else ""),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(doc, out_dir):
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(doc))
    chart(doc, os.path.join(out_dir, "results.png"))
