import Foundation

/// Encoded shape-only plans by request, so that repeated requests (the common case: a few
/// profiles × budgets) cost a dictionary lookup instead of planning and encoding again.
/// Plans are deterministic functions of the request, so a cached answer is the same bytes.
/// Bounded: the oldest entry goes first (FIFO) beyond `capacity`.
///
/// `@unchecked Sendable`: `entries` and `order` are guarded by `lock`.
final class PlanCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: Data] = [:]
    private var order: [String] = []
    let capacity: Int

    init(capacity: Int = 256) { self.capacity = capacity }

    func value(for key: String) -> Data? { lock.withLock { entries[key] } }

    func insert(_ data: Data, for key: String) {
        lock.withLock {
            guard entries[key] == nil else { return }
            entries[key] = data
            order.append(key)
            if order.count > capacity { entries[order.removeFirst()] = nil }
        }
    }
}
