"""Render bench/results/*.json as markdown tables into bench/README.md (between the RESULTS markers)."""

from __future__ import annotations

import json
from typing import Any

from bench.common import REPO, RESULTS, log

README = REPO / "bench" / "README.md"
BEGIN, END = "<!-- RESULTS:BEGIN -->", "<!-- RESULTS:END -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _runs(family: str) -> list[dict[str, Any]]:
    """Earlier runs kept as `FAMILY-<commit>[-what].json`, oldest first, then the current `FAMILY.json`.

    `make bench` writes the current one; rename it after its commit to keep it in the history.
    """
    history = []
    for path in RESULTS.glob(f"{family}-*.json"):
        suffix = path.stem[len(family) + 1 :]
        if suffix[:7].isalnum() and all(c in "0123456789abcdef" for c in suffix[:7]):
            history.append(json.loads(path.read_text()))
    history.sort(key=lambda d: d["machine"]["date"])
    current = _load(family)
    return history + ([current] if current is not None else [])


def _mmm(s: dict[str, Any], fmt: str = "{:.2f}") -> str:
    if not s or not s.get("n"):
        return "-"
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}..{fmt.format(s['max'])})"


def _machine(m: dict[str, Any]) -> str:
    mem = next((line for line in m["free_h"].splitlines() if line.startswith("Mem:")), "")
    return (
        f"{m['date']}, `nproc` {m['nproc']}, CPU {m['cpu']}, `free -h` {' '.join(mem.split())}, "
        f"load at start {' '.join(m['loadavg_at_start'])}, Python {m['python']}, git {m['git_head']}"
        + (
            " (+ uncommitted webhook/initcontainer changes)"
            if m.get("webhook_or_initcontainer_uncommitted")
            else ""
        )
    )


def delivery(lines: list[str]) -> None:
    """The newest run in full, then how the init container's ratios moved over the earlier runs."""
    runs = _runs("delivery")
    if not runs:
        lines.append("_delivery: not run yet_\n")
        return
    _delivery_run(runs[-1], lines)
    large = _load("delivery-large")
    if large is not None:
        _delivery_run(large, lines)
    for tar_format in ("posix", "gitarchive"):  # `--tar-format`: the same package, other headers
        headers = _load(f"delivery-pax-{tar_format}")
        if headers is not None:
            _delivery_run(headers, lines)
    if len(runs) < 2:
        return
    lines += [
        "The init container across runs, oldest first (the last is the table above; full tables of the "
        "earlier ones are in the git history of this file):",
        "",
        "| code | format | network | method | ratio vs seed (throughput) | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for d in runs:
        for row in d["table"]:
            if row["method"].startswith("contender"):
                lines.append(
                    f"| {_label(d)} | {row['format']} | {'100 MiB/s' if row['throttled'] else 'loopback'} "
                    f"| {row['method']} | **{_mmm(row['ratio_vs_seed'])}** "
                    f"| {_mmm(row['maxrss_mib'], '{:.1f}')} |"
                )
    lines.append("")


def _delivery_run(d: dict[str, Any], lines: list[str]) -> None:
    pkg = d["package"]
    arch = pkg["archives"]
    kind = {"large": "four large files"}.get(pkg.get("kind", "mixed"), "mixed files")
    tar_format = pkg.get("tar_format", "ustar")
    if tar_format != "ustar":
        kind += f", `--tar-format {tar_format}`"
    sizes = f".tar {arch['tar']['bytes'] / 1e6:.0f} MB"
    if "tar.gz" in arch:
        sizes += (
            f", .tar.gz {arch['tar.gz']['bytes'] / 1e6:.0f} MB "
            f"(gzip -6: {arch['tar.gz']['bytes'] / arch['tar']['bytes']:.2f} of the tar)"
        )
    lines += [
        f"### Package delivery (800 MB, {kind}), {_label(d)}",
        "",
        f"Machine: {_machine(d['machine'])}.",
        f"Command: `{d['command'].strip()}`; {d['rounds']} rounds, methods interleaved with rotating order; "
        f"destination on {d['dest_fs']['kind']} at `{d['dest_fs']['mount']}`; throttled = nginx "
        f"`limit_rate {d['limit_rate']}` (bytes/s per connection, m = MiB).",
        f"Package: {pkg['extracted_bytes'] / 1e6:.0f} MB in {pkg['files']} files, {pkg['dirs']} directories; "
        f"{sizes}.",
        "",
        "Ratios are throughput, paired per round: > 1 is faster than the reference. The limit is "
        "`curl | igzip -dc | tar -x` for .tar.gz (method `limit`), `curl | tar -x` for .tar (`stream`).",
        "",
        "| format | network | method | wall s | extracted MB/s | ratio vs seed | ratio vs limit "
        "| peak RSS MiB | peak disk MB | CPU s | all runs complete |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in d["table"]:
        lines.append(
            f"| {row['format']} | {'100 MiB/s' if row['throttled'] else 'loopback'} | {row['method']} "
            f"| {_mmm(row['wall_s'])} | {_mmm(row['throughput_mb_s'], '{:.0f}')} "
            f"| **{_mmm(row['ratio_vs_seed'])}** | **{_mmm(row.get('ratio_vs_limit', {}))}** "
            f"| {_mmm(row['maxrss_mib'], '{:.1f}')} "
            f"| {_mmm(row['peak_disk_mb'], '{:.0f}')} | {_mmm(row['cpu_s'], '{:.1f}')} "
            f"| {'yes' if row['all_ok'] else 'NO'} |"
        )
    big = d.get("big")
    if big:
        p = big["package"]
        lines += [
            "",
            f"4 GB package (one run each): {p['extracted_bytes'] / 1e9:.2f} GB in {p['files']} files, "
            f".tar.gz {p['archives']['tar.gz']['bytes'] / 1e9:.2f} GB, loopback.",
            "",
            "| method | wall s | extracted MB/s | peak RSS MiB | peak disk MB | complete |",
            "|---|---|---|---|---|---|",
        ]
        for r in big["runs"]:
            lines.append(
                f"| {r['method']} | {r['wall_s']:.1f} | {r['throughput_mb_s']:.0f} | {r['maxrss_mib']:.1f} "
                f"| {r['peak_disk_mb']:.0f} | {'yes' if r['extracted_ok'] else 'NO'} |"
            )
    lines.append("")


def webhook(lines: list[str]) -> None:
    runs = _runs("webhook")
    if not runs:
        lines.append("_webhook: not run yet_\n")
        return
    w = runs[-1]
    lines += [
        "### Webhook `/mutate` against `/bare` (same process, HTTPS, 127.0.0.1)",
        "",
        f"Machine: {_machine(w['machine'])}.",
        f"Command: `{w['command'].strip()}`. Bodies: "
        + ", ".join(f"{k} {v / 1000:.1f} kB" for k, v in w["body_bytes"].items())
        + ". Peak: `wrk -t1 -c{c} -d{s}s`, {n} interleaved rounds.".format(
            c=w["throughput"]["connections"],
            s=w["throughput"]["seconds"],
            n=len(w["throughput"]["runs"]) // 4,
        ),
        "",
        "| code | pod | /bare req/s | /mutate req/s | **mutate / bare** | /bare p50 / p99 ms "
        "| /mutate p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for data in runs:
        label = _label(data)
        if "throughput" not in data:
            continue
        for name, t in data["throughput"]["table"].items():
            lines.append(
                f"| {label} | {name} | {_mmm(t['bare']['rps'], '{:.0f}')} "
                f"| {_mmm(t['mutate']['rps'], '{:.0f}')} "
                f"| **{_mmm(t['ratio_mutate_over_bare'])}** "
                f"| {t['bare']['p50_ms']['median']:.2f} / {t['bare']['p99_ms']['median']:.2f} "
                f"| {t['mutate']['p50_ms']['median']:.2f} / {t['mutate']['p99_ms']['median']:.2f} |"
            )
    lines += [
        "",
        "At half of /mutate's peak (`hey -c W -q R/W`, the same offered rate for both endpoints):",
        "",
        "| code | pod | offered req/s | /bare p50 / p99 ms | /mutate p50 / p99 ms | **p99 mutate / bare** |",
        "|---|---|---|---|---|---|",
    ]
    for data in runs:
        label = _label(data)
        if "half_load" not in data:
            continue
        for name, t in data["half_load"]["table"].items():
            lines.append(
                f"| {label} | {name} | {t['offered_rps']:.0f} "
                f"| {t['bare']['p50_ms']['median']:.2f} / {t['bare']['p99_ms']['median']:.2f} "
                f"| {t['mutate']['p50_ms']['median']:.2f} / {t['mutate']['p99_ms']['median']:.2f} "
                f"| **{_mmm(t['p99_ratio_mutate_over_bare'])}** |"
            )
    mem_run = next((x for x in reversed(runs) if x.get("memory")), w)
    mem = mem_run.get("memory")
    if mem:
        lines += [
            "",
            f"Memory of one worker ({_label(mem_run)}; VmRSS, MiB) every 10,000 reviews "
            f"(mix {', '.join(f'{k} {v:.0%}' for k, v in mem['mix'].items())}; count checked on /metrics):",
            "",
            "| reviews | " + " | ".join(str(s["reviews"]) for s in mem["samples"]) + " |",
            "|---|" + "---|" * len(mem["samples"]),
            "| RSS MiB | " + " | ".join(f"{s['rss_mib']:.1f}" for s in mem["samples"]) + " |",
            "",
            f"Growth from 10,000 to the last sample: {mem['growth_after_first_batch_mib']:+.2f} MiB "
            f"(max - min after the first batch: {mem['max_minus_min_after_first_batch_mib']:.2f} MiB).",
        ]
    prof_run = next((x for x in reversed(runs) if x.get("profile")), w)
    prof = prof_run.get("profile")
    prof_label = _label(prof_run)
    if prof and "pod3" in prof and "inclusive_share" in prof["pod3"]:
        lines += [
            "",
            f"Where the server's time goes under `/mutate` load ({prof_label}; py-spy, inclusive share "
            "of the busy samples; buckets by frame name):",
            "",
            "| bucket | pod3 | pod20 |",
            "|---|---|---|",
        ]
        for bucket in prof["pod3"]["inclusive_share"]:
            a = prof["pod3"]["inclusive_share"].get(bucket, 0)
            b = prof.get("pod20", {}).get("inclusive_share", {}).get(bucket, 0)
            lines.append(f"| {bucket} | {a:.0%} | {b:.0%} |")
    lines.append("")


def apiserver(lines: list[str]) -> None:
    runs = _runs("apiserver")
    if not runs:
        lines.append("_apiserver: not run yet_\n")
        return
    a = runs[-1]
    lines += [
        "### Pod creation through a real kube-apiserver, with and without the webhook",
        "",
        f"Machine: {_machine(a['machine'])}.",
        f"Command: `{a['command'].strip()}`: {a['pods_per_mode']} Pods per mode, blocks of {a['block']} "
        "alternating with/without (ABBA), one keep-alive HTTPS client, kube-apiserver (per row) + etcd.",
        "",
        "| code | without p50 / p99 ms | with p50 / p99 ms | **added p50** | added p99 "
        "| p50 of each block, with (median, min..max) | mean time in the /mutate handler |",
        "|---|---|---|---|---|---|---|",
    ]
    for data in runs:
        label = f"{_label(data)}, kube {data.get('kube_version', 'v1.20.2')}"
        t = data["table"]
        lines.append(
            f"| {label} | {t['without']['p50_ms']:.2f} / {t['without']['p99_ms']:.2f} "
            f"| {t['with']['p50_ms']:.2f} / {t['with']['p99_ms']:.2f} | **{t['added_p50_ms']:.2f} ms** "
            f"| {t['added_p99_ms']:.2f} ms | {_mmm(t['block_p50_ms']['with'])} "
            f"| {_handler(t)} |"
        )
    lines.append("")


def floor(lines: list[str]) -> None:
    """bench/experiments/admission_floor: what any webhook costs a Pod create, next to ours."""
    f = _load("admission-floor")
    if f is None:
        return
    lines += [
        f"### The floor: what any webhook adds on this kube-apiserver ({f.get('kube_version', 'v1.20.2')})",
        "",
        f"Machine: {_machine(f['machine'])}.",
        f"Command: `{f['command'].strip()}`: {f['rounds']} rounds of {f['pods_per_round']} Pods per variant, "
        "the variants taking turns Pod by Pod, one keep-alive HTTPS client. The Go variants are a minimal "
        f"webhook in Go (bench/experiments/gohook) answering at once; our patch is {f['patch_bytes']} bytes.",
        "",
        "| variant | median ms per create | **added vs none** | added, median of the per-round differences "
        "| p10 / p90 ms |",
        "|---|---|---|---|---|",
    ]
    for name, row in f["table"].items():
        lines.append(
            f"| {name} | {row['median_ms']:.2f} | **{row['added_ms']:+.2f} ms** "
            f"| {row['added_paired_ms']:+.2f} ms | {row['p10_ms']:.2f} / {row['p90_ms']:.2f} |"
        )
    lines.append("")


def _label(data: dict[str, Any]) -> str:
    """Which code was measured: the commit, and the in-process experiment if any."""
    label = f"git {data['machine']['git_head']}"
    return label + (f" + experiment {data['experiment']}" if data.get("experiment") else "")


def _handler(t: dict[str, Any]) -> str:
    v = t.get("webhook_handler_mean_ms")
    return "-" if v is None else f"{v:.2f} ms"


def main(argv: list[str] | None = None) -> None:
    lines: list[str] = [BEGIN, ""]
    delivery(lines)
    webhook(lines)
    apiserver(lines)
    floor(lines)
    lines.append(END)
    text = README.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        README.write_text(head + "\n".join(lines) + tail)
        log(f"updated {README.relative_to(REPO)}")
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
