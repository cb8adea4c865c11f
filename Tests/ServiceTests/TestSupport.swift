import Foundation
import Logging
import ServiceLifecycle
@testable import Service
import Analysis
import Checkpoint
import ModelProfiles
#if canImport(Glibc)
import Glibc
#endif

/// A response as the raw client read it.
struct HTTPResult: Sendable {
    var status: Int
    var headers: [String: String]
    var body: Data

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorMessage: String { (json["error"] as? [String: Any])?["message"] as? String ?? "" }
    var text: String { String(decoding: body, as: UTF8.self) }
}

struct TestClientError: Error, CustomStringConvertible {
    var description: String
}

/// A minimal HTTP/1.1 client over a blocking loopback socket (one connection per request,
/// `Connection: close`), run on its own thread so it never blocks Swift's cooperative pool.
struct LoopbackClient: Sendable {
    var port: Int
    var token: String?

    func get(_ path: String, headers: [String: String] = [:]) async throws -> HTTPResult {
        try await request("GET", path, headers: headers)
    }

    func delete(_ path: String) async throws -> HTTPResult { try await request("DELETE", path) }

    func post(_ path: String, json: [String: Any]) async throws -> HTTPResult {
        try await request("POST", path, body: try JSONSerialization.data(withJSONObject: json))
    }

    /// `chunked`: send the body as one chunk of `Transfer-Encoding: chunked`, without a Content-Length.
    func request(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:],
                 chunked: Bool = false) async throws -> HTTPResult {
        let port = self.port, token = self.token
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result {
                    try Self.blocking(method, path, port: port, token: token, body: body, headers: headers, chunked: chunked)
                })
            }
        }
    }

    private static func blocking(_ method: String, _ path: String, port: Int, token: String?, body: Data?,
                                 headers: [String: String], chunked: Bool) throws -> HTTPResult {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestClientError(description: "socket: \(errno)") }
        defer { close(fd) }
        // Long: on a loaded 2-core machine the in-process server can wait minutes for a thread (other suites run
        // heavy work beside it); a server that does not answer at all still fails the test, only later.
        var timeout = timeval(tv_sec: 600, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestClientError(description: "connect to 127.0.0.1:\(port): errno \(errno)") }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        if let body {
            if !headers.keys.contains(where: { $0.lowercased() == "content-type" }) { head += "Content-Type: application/json\r\n" }
            head += chunked ? "Transfer-Encoding: chunked\r\n" : "Content-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        var out = Data(head.utf8)
        if let body {
            if chunked { out.append(Data(String(body.count, radix: 16).utf8) + Data("\r\n".utf8)) }
            out.append(body)
            if chunked { out.append(Data("\r\n0\r\n\r\n".utf8)) }
        }
        // The server may answer (413) before reading everything: ignore send errors, read the answer.
        _ = out.withUnsafeBytes { raw -> Int in
            var sent = 0
            while sent < raw.count {
                let n = send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if n <= 0 { break }
                sent += n
            }
            return sent
        }
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received.append(contentsOf: buffer[0..<n])
        }
        return try parse(received)
    }

    private static func parse(_ data: Data) throws -> HTTPResult {
        guard let split = data.firstRange(of: Data("\r\n\r\n".utf8)) else {
            throw TestClientError(description: "no HTTP response head in \(data.count) bytes")
        }
        let lines = String(decoding: data[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw TestClientError(description: "bad status line \(lines[0])")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Data(data[split.upperBound...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var decoded = Data(), rest = body
            while let lineEnd = rest.firstRange(of: Data("\r\n".utf8)),
                  let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self), radix: 16), size > 0 {
                let start = lineEnd.upperBound
                decoded.append(rest[start..<(start + size)])
                rest = Data(rest[(start + size + 2)...])
            }
            body = decoded
        }
        return HTTPResult(status: status, headers: headers, body: body)
    }
}

/// A quiet logger for test servers.
let testLogger: Logger = {
    var logger = Logger(label: "deltaplan.test")
    logger.logLevel = .warning
    return logger
}()

/// Starts the real application on a loopback port chosen by the system, runs `body` with a
/// client, then shuts the server (and its workers) down gracefully.
func withServer<T: Sendable>(
    _ configuration: ServiceConfiguration, runners: JobRunners = .builtIn(),
    _ body: @Sendable (LoopbackClient) async throws -> T
) async throws -> T {
    var configuration = configuration
    configuration.host = "127.0.0.1"
    configuration.port = 0
    let (ports, portContinuation) = AsyncStream<Int>.makeStream()
    let app = try buildApplication(configuration, runners: runners, logger: testLogger,
                                   onServerRunning: { port in portContinuation.yield(port) })
    let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: testLogger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw TestClientError(description: "the server did not start") }
        let client = LoopbackClient(port: port, token: configuration.token)
        do {
            let result = try await body(client)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

/// A fresh directory (symlinks resolved) removed by the caller.
func temporaryDirectory(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-service-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return URL(fileURLWithPath: ResolvedPath(url.path)!.path, isDirectory: true)
}

/// A tiny synthetic base/fine-tuned pair (llama-2-7b scaled by 1/64, `layers` layers: 7 matrices
/// per layer) under `root/models`.
func syntheticPair(in root: URL, layers: Int = 1, seed: UInt64 = 1) throws -> SyntheticPair.Paths {
    let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: layers)
    return try SyntheticPair(profile: profile, seed: seed).write(to: root.appendingPathComponent("models"))
}

/// Polls a job until its state is one of `states` (or 120 s pass, a failure rather than a hang).
func waitForJob(_ client: LoopbackClient, _ id: String, states: Set<String>) async throws -> [String: Any] {
    let deadline = Date().addingTimeInterval(120)
    while true {
        let job = try await client.get("/v1/jobs/\(id)").json
        if let state = job["state"] as? String, states.contains(state) { return job }
        guard Date() < deadline else {
            throw TestClientError(description: "job \(id) did not reach \(states.sorted()) in time; last: \(job)")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// Polls an analysis job until its first matrix is stored (its progress says "analyzed ...").
func waitForFirstMatrix(_ client: LoopbackClient, _ id: String) async throws {
    let deadline = Date().addingTimeInterval(120)
    while true {
        let job = try await client.get("/v1/jobs/\(id)").json
        if ((job["progress"] as? [String: Any])?["message"] as? String)?.hasPrefix("analyzed") == true { return }
        if let state = job["state"] as? String, state != "running" && state != "queued" {
            throw TestClientError(description: "job \(id) ended before its first matrix: \(job)")
        }
        guard Date() < deadline else { throw TestClientError(description: "job \(id) stored no matrix in time: \(job)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// The analysis runner, held after its first finished matrix until the job is asked to stop
/// (cancel or shutdown): a deterministic "mid-analysis" moment for restart and cancel tests.
func analysisHeldAfterFirstMatrix() -> JobRunners {
    var runners = JobRunners.builtIn()
    let analysis = runners[.analysis]
    runners[.analysis] = JobRunner(
        resumable: analysis.resumable,
        run: { context in
            var held = context
            held.reportProgress = { fraction, message in
                context.reportProgress(fraction, message)
                if message.hasPrefix("analyzed") {
                    while !context.shouldStop { usleep(2000) }
                }
            }
            return try analysis.run(held)
        },
        discard: analysis.discard)
    return runners
}
