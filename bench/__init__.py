"""Benchmarks for package-injector: package delivery and admission cost, each against a baseline run in the
same command (see bench/README.md)."""
