// Benchmark suites for DeltaPlan; see BENCHMARKS.md for how each is run.
print("usage: deltaplan-bench SUITE")
