import Foundation
import LinearAlgebra
import Testing

/// ``runConcurrently(count:parallelism:estimate:shouldStop:started:body:finished:)``: every item
/// once, results by index whatever the thread count, the memory limit, stops and failures.
@Suite struct ConcurrentWorkTests {
    struct Failure: Error, Equatable { let index: Int }

    /// Counts items running at once and the bytes they hold (`@unchecked Sendable`: state under `lock`).
    final class Tracker: @unchecked Sendable {
        let lock = NSLock()
        var running = 0, maxRunning = 0, held = 0, maxHeld = 0
        func enter(_ bytes: Int) {
            lock.withLock { running += 1; held += bytes; maxRunning = max(maxRunning, running); maxHeld = max(maxHeld, held) }
        }
        func leave(_ bytes: Int) { lock.withLock { running -= 1; held -= bytes } }
    }

    @Test(arguments: [1, 2, 3, 8]) func everyItemOnceWithItsResult(threads: Int) {
        var results = [Int?](repeating: nil, count: 50)
        var order: [Int] = [], startedOrder: [Int] = []
        let outcome: ConcurrentOutcome<Failure> = runConcurrently(
            count: 50, parallelism: Parallelism(threads: threads), started: { startedOrder.append($0) },
            body: { i in
                var x = UInt64(i) &* 0x9E37_79B9_7F4A_7C15
                for _ in 0..<(i % 7) * 1000 { x = x &* 6364136223846793005 &+ 1 }
                return .success(i * i)
            },
            finished: { i, v in results[i] = v; order.append(i) })
        guard case .completed = outcome else { Issue.record("\(outcome)"); return }
        #expect(results == (0..<50).map { $0 * $0 })
        #expect(order.sorted() == Array(0..<50))
        #expect(startedOrder == Array(0..<50))
    }

    @Test func runsAtMostThreadsAndWithinTheMemoryLimit() {
        let tracker = Tracker()
        let sizes = (0..<40).map { [5, 30, 60, 100][$0 % 4] }
        let outcome: ConcurrentOutcome<Failure> = runConcurrently(
            count: sizes.count, parallelism: Parallelism(threads: 3, memoryLimit: 100), estimate: { sizes[$0] },
            body: { [sizes] i in
                tracker.enter(sizes[i])
                // Until two items have run at once (the first waits for the second; 5 s at most,
                // a failure of the test rather than a hang), then a moment.
                var waited = 0
                while tracker.lock.withLock({ tracker.maxRunning }) < 2 && waited < 5000 { usleep(1000); waited += 1 }
                usleep(500)
                tracker.leave(sizes[i])
                return .success(())
            },
            finished: { _, _ in })
        guard case .completed = outcome else { Issue.record("\(outcome)"); return }
        #expect(tracker.maxRunning <= 3 && tracker.maxRunning >= 2)
        #expect(tracker.maxHeld <= 100)
    }

    @Test(arguments: [1, 2]) func stopsAndFails(threads: Int) {
        var finished = 0
        let stopped: ConcurrentOutcome<Failure> = runConcurrently(
            count: 20, parallelism: Parallelism(threads: threads), shouldStop: { finished >= 3 },
            body: { _ in .success(()) }, finished: { _, _ in finished += 1 })
        guard case .stopped = stopped else { Issue.record("\(stopped)"); return }
        #expect(finished >= 3 && finished < 3 + threads)

        var done: [Int] = []
        let failed: ConcurrentOutcome<Failure> = runConcurrently(
            count: 20, parallelism: Parallelism(threads: threads),
            body: { i in i == 5 || i == 6 ? .failure(Failure(index: i)) : .success(()) }, finished: { i, _ in done.append(i) })
        guard case let .failed(index, error) = failed else { Issue.record("\(failed)"); return }
        #expect(index == 5 && error == Failure(index: 5))
        #expect(done.allSatisfy { $0 < 5 + threads })
    }
}
