"""`python -m bench [all|delivery|webhook|apiserver|report] [options]` (see bench/README.md)."""

from __future__ import annotations

import sys

from bench.common import log


def _all(argv: list[str]) -> None:
    from bench import apiserver, delivery, report, webhook_bench
    from bench.experiments import admission_floor, apiserver_profile

    quick = "--quick" in argv
    rounds = ["--rounds", "2"] if quick else []
    methods = ["--methods", "seed,stream,contender"]
    delivery.main([*rounds, *methods] + ([] if quick else ["--big"]))
    webhook_bench.main([*rounds] + (["--reviews", "20000"] if quick else []))
    try:
        apiserver.main(["--pods", "100"] if quick else [])
    except Exception as exc:  # no kube-apiserver binaries: say so, keep the rest
        log(f"apiserver benchmark skipped: {exc!r}")
    # Where the apiserver's share comes from: needs go for the reference webhook (Debian's golang-go).
    for experiment, args in ((admission_floor, [*rounds]), (apiserver_profile, [])):
        try:
            experiment.main(args)
        except (Exception, SystemExit) as exc:
            log(f"{experiment.__name__} skipped: {exc!r}")
    report.main([])


def main() -> None:
    cmd, argv = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("all", [])
    if cmd == "all":
        _all(argv)
    elif cmd == "delivery":
        from bench import delivery

        delivery.main(argv)
    elif cmd == "webhook":
        from bench import webhook_bench

        webhook_bench.main(argv)
    elif cmd == "apiserver":
        from bench import apiserver

        apiserver.main(argv)
    elif cmd == "report":
        from bench import report

        report.main(argv)
    else:
        raise SystemExit(f"unknown command {cmd!r}: all, delivery, webhook, apiserver, report")


if __name__ == "__main__":
    main()
