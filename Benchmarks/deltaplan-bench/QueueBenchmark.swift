import Foundation
import Service

/// The job queue's claims: JOBS queued jobs taken and finished (nothing run) by two nodes' worker
/// threads, each node with its own ``PostgresJobStore`` (its own connection pool, as two `serve`
/// processes), against one node's two threads on SQLite (``JobStore``) in the same run. Prints the
/// claims per second and the latency of `claimNext` (median, p99).
///
/// The PostgreSQL database must be one for benchmarks: DeltaPlan's tables in it are dropped first.
func runQueueBenchmark(_ arguments: [String]) throws {
    guard let url = arguments.first else { throw BenchmarkFailure("usage: deltaplan-bench queue POSTGRES_URL [--jobs N]") }
    let jobs = arguments.firstIndex(of: "--jobs").flatMap { arguments.indices.contains($0 + 1) ? Int(arguments[$0 + 1]) : nil } ?? 2000
    let drop = Process()
    drop.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    drop.arguments = ["psql", "-X", "-q", url, "-c", "DROP TABLE IF EXISTS deltaplan_job_run, deltaplan_job"]
    try drop.run()
    drop.waitUntilExit()

    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-queue-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let sqlite = try JobStore(path: directory.appendingPathComponent("jobs.sqlite").path)
    let nodes = try (0..<2).map { _ in try PostgresJobStore(url: url, leaseSeconds: 30, resumable: { _ in true }) }
    defer { for node in nodes { node.shutdown() } }

    print("queue: \(jobs) jobs queued, then claimed and finished by 2 worker threads (nothing run)")
    for (name, queues) in [("SQLite, 1 node × 2 threads", [sqlite, sqlite] as [any JobQueue]),
                           ("PostgreSQL, 2 nodes × 1 thread", nodes as [any JobQueue])] {
        try blockingCreate(jobs, in: queues[0])
        let latencies = LatencyLog()
        let start = Date()
        let threads = queues.map { queue in
            let thread = Thread {
                while true {
                    let t0 = Date()
                    guard let job = try? queue.claimNext() else { break }
                    latencies.add(Date().timeIntervalSince(t0))
                    _ = try? queue.finish(id: job.id, state: .succeeded, error: nil, result: nil)
                }
            }
            thread.start()
            return thread
        }
        while threads.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.01) }
        let wall = Date().timeIntervalSince(start)
        let sorted = latencies.values.sorted()
        guard sorted.count == jobs else { throw BenchmarkFailure("\(name): \(sorted.count) claims of \(jobs) jobs") }
        let p = { (q: Double) in sorted[min(sorted.count - 1, Int(q * Double(sorted.count)))] * 1000 }
        print(String(format: "%@: %.0f claims/s (%.2f s), claim latency median %.2f ms, p99 %.2f ms",
                     name, Double(jobs) / wall, wall, p(0.5), p(0.99)))
    }
}

private func blockingCreate(_ count: Int, in queue: any JobQueue) throws {
    let done = DispatchSemaphore(value: 0)
    let failure = LatencyLog()
    Task {
        do { for _ in 0..<count { _ = try await queue.create(kind: .plan, parameters: Data("{}".utf8)) } } catch { failure.fail("\(error)") }
        done.signal()
    }
    done.wait()
    if let message = failure.failure { throw BenchmarkFailure(message) }
}

/// Values appended from several threads.
private final class LatencyLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Double] = []
    private var message: String?
    func add(_ value: Double) { lock.withLock { stored.append(value) } }
    func fail(_ text: String) { lock.withLock { message = text } }
    var values: [Double] { lock.withLock { stored } }
    var failure: String? { lock.withLock { message } }
}

struct BenchmarkFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
