// Benchmark suites for DeltaPlan; see BENCHMARKS.md for how each is run.
switch CommandLine.arguments.dropFirst().first {
case "search": runSearchBenchmark()
default: print("usage: deltaplan-bench SUITE")
}
