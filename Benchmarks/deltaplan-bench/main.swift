// Benchmark suites for DeltaPlan; see BENCHMARKS.md for how each is run.
//
//   deltaplan-bench svd [--quick] [--full-only | --randomized-only] [--shape MxN|decay]
//   deltaplan-bench search
//   deltaplan-bench fleet                       (8 Llama-2-7B-shaped models under one budget)
//   deltaplan-bench analyze-svd BASE FINETUNED   (the reference of Benchmarks/run-analyze.sh)
//   deltaplan-bench gram-svd [--shape MxN] [--spectrum flat|decay] [--deltas BASE FINETUNED] [--accuracy]
//   deltaplan-bench quantizers                  (clipping search and input hashing, side by side)
//   deltaplan-bench measure STORE [--threads N] [--blas-threads M] [--chunk C]   (the measurement pass, per matrix)
//   deltaplan-bench queue POSTGRES_URL [--jobs N]  (the service's job queue: claims on PostgreSQL by 2 nodes, SQLite)
//
// Suites print human-readable lines; the svd suite also prints machine-readable
// `RESULT <key> <seconds>` lines that Benchmarks/run-svd.sh joins with the Python reference.

import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
let usage = "usage: deltaplan-bench svd [--quick] [--full-only | --randomized-only] [--shape MxN|decay]\n       deltaplan-bench search\n       deltaplan-bench fleet\n       deltaplan-bench analyze-svd BASE FINETUNED\n       deltaplan-bench gram-svd [--shape MxN] [--spectrum flat|decay] [--deltas BASE FINETUNED] [--tensor NAME] [--accuracy]\n       deltaplan-bench quantizers\n       deltaplan-bench measure STORE [--threads N] [--blas-threads M] [--chunk C]\n       deltaplan-bench queue POSTGRES_URL [--jobs N]"
switch arguments.first {
case "svd":
    do {
        let shape = arguments.firstIndex(of: "--shape").flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil }
        let part: SVDSuite.Part = arguments.contains("--full-only") ? .full
            : arguments.contains("--randomized-only") ? .randomized : .all
        try SVDSuite(quick: arguments.contains("--quick"), shape: shape, part: part).run()
    } catch {
        print("svd suite failed: \(error)")
        exit(1)
    }
case "search":
    runSearchBenchmark()
case "fleet":
    runFleetBenchmark()
case "analyze-svd" where arguments.count == 3:
    do { try runAnalyzeSVDReference(base: arguments[1], finetuned: arguments[2]) } catch {
        print("analyze-svd failed: \(error)")
        exit(1)
    }
case "gram-svd":
    do { try runGramSVDBenchmark(Array(arguments.dropFirst())) } catch {
        print("gram-svd failed: \(error)")
        exit(1)
    }
case "quantizers":
    do { try runQuantizerBenchmark() } catch {
        print("quantizers failed: \(error)")
        exit(1)
    }
case "measure":
    do { try runMeasureBenchmark(Array(arguments.dropFirst())) } catch {
        print("measure failed: \(error)")
        exit(1)
    }
case "queue":
    do { try runQueueBenchmark(Array(arguments.dropFirst())) } catch {
        print("queue failed: \(error)")
        exit(1)
    }
default:
    print(usage)
    exit(arguments.isEmpty ? 0 : 2)
}
