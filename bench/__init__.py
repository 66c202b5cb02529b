"""The benchmarks. Each script runs as a module from the repository root, e.g. `python -m bench.bench_server`,
so that `bench.*`, `core`, `handlers` and `tests.support` import like any other package."""
