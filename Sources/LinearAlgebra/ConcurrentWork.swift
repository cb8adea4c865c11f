import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How many work items (matrices) a stage runs at once, and how much memory they may hold together.
///
/// Parallelism is over whole matrices, each on one BLAS thread (``BLASThreads``): a matrix's
/// results are then computed by the same single-threaded code whatever the thread count, so they
/// are byte-identical for every `threads` (OpenBLAS's multi-threaded kernels may split sums
/// differently). Set ``BLASThreads/count`` to 1 before running with `threads > 1`.
public struct Parallelism: Sendable, Hashable {
    /// Work items at once, ≥ 1.
    public var threads: Int
    /// The most bytes the running items may hold together by their estimates; an item whose
    /// estimate alone exceeds it still runs, on its own.
    public var memoryLimit: Int

    /// The cores of this machine (`activeProcessorCount`): `--threads`'s default.
    public static var machineThreads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// 2.25 GiB: leaves room under the 3 GB the stages must stay below for what the estimates
    /// leave out (the process itself, mapped pages being read, allocator slack).
    public static let defaultMemoryLimit = 2_415_919_104

    public init(threads: Int = machineThreads, memoryLimit: Int = defaultMemoryLimit) {
        precondition(threads >= 1, "at least one thread, got \(threads)")
        self.threads = threads
        self.memoryLimit = memoryLimit
    }

    /// One item at a time.
    public static let serial = Parallelism(threads: 1)
}

/// How a run of ``runConcurrently(count:parallelism:estimate:shouldStop:body:finished:)`` ended.
public enum ConcurrentOutcome<Failure: Error>: Sendable where Failure: Sendable {
    /// Every item finished.
    case completed
    /// `shouldStop` returned true: no item started after that; the ones running finished (and
    /// were reported).
    case stopped
    /// An item failed: no item started after that; the running ones finished. The failure of the
    /// lowest index among those that failed.
    case failed(index: Int, Failure)
}

/// Runs `body(i)` for the items i in `0..<count` on `parallelism.threads` threads, starting them in
/// index order, each when a thread is free and its `estimate(i)` bytes fit under the memory limit
/// beside the running items' (or nothing else runs).
///
/// `shouldStop` and `started` (before each start) and `finished` (after each item, in the order
/// items finish) run on the calling thread, so they need not be thread-safe; `body` runs on a worker thread
/// (or, with one thread, on the calling thread). With one thread this is a plain loop.
public func runConcurrently<Value: Sendable, Failure: Error & Sendable>(
    count: Int, parallelism: Parallelism, estimate: (Int) -> Int = { _ in 0 }, shouldStop: () -> Bool = { false },
    started: (Int) -> Void = { _ in },
    body: @escaping @Sendable (Int) -> Result<Value, Failure>, finished: (Int, Value) -> Void
) -> ConcurrentOutcome<Failure> {
    if parallelism.threads == 1 || count <= 1 {
        for i in 0..<count {
            if shouldStop() { return .stopped }
            started(i)
            switch body(i) {
            case let .success(value):
                finished(i, value)
                StopPoint.itemFinished()
            case let .failure(error): return .failed(index: i, error)
            }
        }
        return .completed
    }
    let queue = WorkQueue<Value, Failure>()
    let workers = min(parallelism.threads, count)
    for _ in 0..<workers {
        let thread = Thread { queue.work(body) }
        thread.stackSize = 8 << 20
        thread.start()
    }
    var next = 0, running = 0, held = 0, closing = false
    var estimates: [Int: Int] = [:]
    var failure: (index: Int, error: Failure)?
    var stopped = false
    while true {
        // Start what fits.
        while !closing, next < count, running < workers {
            let bytes = estimate(next)
            guard running == 0 || held + bytes <= parallelism.memoryLimit else { break }
            if shouldStop() { stopped = true; closing = true; break }
            estimates[next] = bytes
            held += bytes
            running += 1
            started(next)
            queue.submit(next)
            next += 1
        }
        if running == 0 && (closing || next == count) { break }
        for (index, result) in queue.takeFinished() {
            running -= 1
            held -= estimates.removeValue(forKey: index) ?? 0
            switch result {
            case let .success(value):
                finished(index, value)
                StopPoint.itemFinished()
            case let .failure(error):
                if failure == nil || index < failure!.index { failure = (index, error) }
                closing = true
            }
        }
    }
    queue.close()
    if let failure { return .failed(index: failure.index, failure.error) }
    return stopped ? .stopped : .completed
}

/// The hand-off between ``runConcurrently(count:parallelism:estimate:shouldStop:body:finished:)``'s
/// calling thread and its workers: indices to run, results to report, under one condition lock.
/// `@unchecked Sendable`: every stored property is read and written only with `condition` held.
private final class WorkQueue<Value: Sendable, Failure: Error & Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [Int] = []
    private var results: [(Int, Result<Value, Failure>)] = []
    private var closed = false
    private var live = 0

    func submit(_ index: Int) {
        condition.lock()
        pending.append(index)
        condition.broadcast()
        condition.unlock()
    }

    /// Blocks until at least one result is there; returns and clears them.
    func takeFinished() -> [(Int, Result<Value, Failure>)] {
        condition.lock()
        defer { condition.unlock() }
        while results.isEmpty { condition.wait() }
        let out = results
        results = []
        return out
    }

    /// A worker's loop: runs submitted indices until closed.
    func work(_ body: @Sendable (Int) -> Result<Value, Failure>) {
        condition.lock()
        live += 1
        while true {
            while pending.isEmpty && !closed { condition.wait() }
            if pending.isEmpty { break }
            let index = pending.removeFirst()
            condition.unlock()
            let result = body(index)
            condition.lock()
            results.append((index, result))
            condition.broadcast()
        }
        live -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Stops the workers once they are idle and waits for them to leave.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        while live > 0 { condition.wait() }
        condition.unlock()
    }
}

/// Test support for interrupted runs: with `DELTAPLAN_STOP_AFTER=N` in its environment, a process
/// stops itself (SIGSTOP, every thread) right after the Nth work item of
/// ``runConcurrently(count:parallelism:estimate:shouldStop:started:body:finished:)`` has finished
/// and been recorded (a matrix of analyze, the measurement pass, compress or evaluate, counted over
/// the process's life), so that a test can `kill -9` it at that moment however loaded the machine.
/// Without the variable it does nothing.
enum StopPoint {
    private static let after = ProcessInfo.processInfo.environment["DELTAPLAN_STOP_AFTER"].flatMap(Int.init)
    private static let lock = NSLock()
    nonisolated(unsafe) private static var finished = 0

    static func itemFinished() {
        guard let after else { return }
        let reached = lock.withLock { () -> Bool in
            finished += 1
            return finished == after
        }
        if reached { raise(SIGSTOP) }
    }
}
