import Foundation

/// Counters and histograms for `GET /metrics`, written in the Prometheus text exposition format
/// (version 0.0.4) by hand.
///
/// Request latencies and job durations are cumulative histograms: `_bucket{le=...}` counts
/// observations ≤ the bound, `_sum` and `_count` follow. Job-state gauges are read from the
/// store at scrape time, so they survive restarts.
///
/// `@unchecked Sendable`: all mutable state is guarded by `lock`.
public final class ServiceMetrics: @unchecked Sendable {
    /// Request latency bounds in seconds.
    static let requestBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
    /// Job duration bounds in seconds.
    static let jobBounds: [Double] = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400]

    struct Histogram {
        var buckets: [Int]
        var sum = 0.0
        var count = 0

        init(bounds: Int) { buckets = Array(repeating: 0, count: bounds) }

        mutating func observe(_ value: Double, bounds: [Double]) {
            for (i, b) in bounds.enumerated() where value <= b { buckets[i] += 1 }
            sum += value
            count += 1
        }
    }

    struct RequestKey: Hashable, Comparable {
        var route: String, method: String, status: Int
        static func < (a: Self, b: Self) -> Bool { (a.route, a.method, a.status) < (b.route, b.method, b.status) }
    }

    struct JobKey: Hashable, Comparable {
        var kind: String, state: String
        static func < (a: Self, b: Self) -> Bool { (a.kind, a.state) < (b.kind, b.state) }
    }

    private let lock = NSLock()
    private var requests: [RequestKey: Histogram] = [:]
    private var jobs: [JobKey: Histogram] = [:]

    public init() {}

    func recordRequest(route: String, method: String, status: Int, seconds: Double) {
        let key = RequestKey(route: route, method: method, status: status)
        lock.withLock { requests[key, default: Histogram(bounds: Self.requestBounds.count)].observe(seconds, bounds: Self.requestBounds) }
    }

    func recordJob(kind: JobKind, state: JobState, seconds: Double) {
        let key = JobKey(kind: kind.rawValue, state: state.rawValue)
        lock.withLock { jobs[key, default: Histogram(bounds: Self.jobBounds.count)].observe(seconds, bounds: Self.jobBounds) }
    }

    /// The exposition text. `jobsByState` comes from the store; `workers`/`busyWorkers` from the pool.
    func exposition(jobsByState: [JobState: Int], workers: Int, busyWorkers: Int) -> String {
        let (requests, jobs) = lock.withLock { (self.requests, self.jobs) }
        var out = ""
        out += "# HELP deltaplan_jobs Jobs in the store by state.\n# TYPE deltaplan_jobs gauge\n"
        for state in JobState.allCases {
            out += "deltaplan_jobs{state=\"\(state.rawValue)\"} \(jobsByState[state] ?? 0)\n"
        }
        out += "# HELP deltaplan_workers Worker threads.\n# TYPE deltaplan_workers gauge\ndeltaplan_workers \(workers)\n"
        out += "# HELP deltaplan_workers_busy Worker threads running a job.\n# TYPE deltaplan_workers_busy gauge\ndeltaplan_workers_busy \(busyWorkers)\n"
        out += "# HELP deltaplan_job_duration_seconds Run time of jobs that ended in this process, by kind and final state.\n"
        out += "# TYPE deltaplan_job_duration_seconds histogram\n"
        for key in jobs.keys.sorted() {
            out += Self.histogram("deltaplan_job_duration_seconds", labels: "kind=\"\(key.kind)\",state=\"\(key.state)\"",
                                  jobs[key]!, bounds: Self.jobBounds)
        }
        out += "# HELP deltaplan_http_requests_total HTTP requests by route, method and status.\n"
        out += "# TYPE deltaplan_http_requests_total counter\n"
        for key in requests.keys.sorted() {
            out += "deltaplan_http_requests_total{\(Self.labels(key))} \(requests[key]!.count)\n"
        }
        out += "# HELP deltaplan_http_request_duration_seconds HTTP request latency (to the response head) by route, method and status.\n"
        out += "# TYPE deltaplan_http_request_duration_seconds histogram\n"
        for key in requests.keys.sorted() {
            out += Self.histogram("deltaplan_http_request_duration_seconds", labels: Self.labels(key), requests[key]!,
                                  bounds: Self.requestBounds)
        }
        return out
    }

    private static func labels(_ key: RequestKey) -> String {
        "route=\"\(escape(key.route))\",method=\"\(key.method)\",status=\"\(key.status)\""
    }

    /// Label value escaping: backslash, double quote and newline.
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    private static func histogram(_ name: String, labels: String, _ h: Histogram, bounds: [Double]) -> String {
        var out = ""
        for (b, n) in zip(bounds, h.buckets) {
            out += "\(name)_bucket{\(labels),le=\"\(b)\"} \(n)\n"
        }
        out += "\(name)_bucket{\(labels),le=\"+Inf\"} \(h.count)\n"
        out += "\(name)_sum{\(labels)} \(h.sum)\n"
        out += "\(name)_count{\(labels)} \(h.count)\n"
        return out
    }
}
