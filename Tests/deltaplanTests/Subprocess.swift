import Foundation
import Testing
@testable import deltaplan
#if canImport(Glibc)
import Glibc
#endif

/// The `deltaplan` executable SwiftPM builds beside the test bundle (`swift test` builds every
/// product first), for tests that must run the tool as its own process: to kill it.
func deltaplanExecutable() throws -> URL {
    let bundle = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    let tool = URL(fileURLWithPath: bundle).deletingLastPathComponent().appendingPathComponent("deltaplan")
    guard FileManager.default.isExecutableFile(atPath: tool.path) else {
        throw CLIFailure("no deltaplan executable beside the test bundle at \(tool.path): run `swift build` first")
    }
    return tool
}

/// `deltaplan ARGUMENTS` as a subprocess, its standard output and error going to files in `logs`,
/// with `CI` unset so that progress comes as one plain line per finished step.
///
/// A class because it owns a running process: `deinit` kills it if a test gave up on it.
/// `@unchecked Sendable`: each instance is used by one test at a time, and `Process` is only read
/// after `waitUntilExit()`.
final class DeltaplanProcess: @unchecked Sendable {
    let arguments: [String]
    let process = Process()
    private let outputURL: URL, errorURL: URL

    /// `environment`: variables set for the child on top of this process's (e.g. `DELTAPLAN_STOP_AFTER`).
    init(_ arguments: [String], logs: URL, environment extra: [String: String] = [:]) throws {
        self.arguments = arguments
        let name = "\(arguments.first ?? "deltaplan")-\(UUID().uuidString.prefix(8))"
        outputURL = logs.appendingPathComponent("\(name).out")
        errorURL = logs.appendingPathComponent("\(name).err")
        _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errorURL.path, contents: nil)
        process.executableURL = try deltaplanExecutable()
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["CI"] = nil
        environment.merge(extra) { _, new in new }
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: outputURL)
        process.standardError = try FileHandle(forWritingTo: errorURL)
        try process.run()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Runs to completion and returns the exit status and standard error.
    static func run(_ arguments: [String], logs: URL) throws -> (status: Int32, errors: String) {
        let child = try DeltaplanProcess(arguments, logs: logs)
        child.process.waitUntilExit()
        return (child.process.terminationStatus, child.errors)
    }

    var output: String { (try? String(contentsOf: outputURL, encoding: .utf8)) ?? "" }
    var errors: String { (try? String(contentsOf: errorURL, encoding: .utf8)) ?? "" }

    /// Polls `condition` every 2 ms while the process runs; true once it holds, false when the
    /// process ended first or `timeout` seconds passed.
    func wait(until condition: () -> Bool, timeout: Double = 120) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard process.isRunning else { return condition() && process.isRunning }
            if condition() { return true }
            usleep(2000)
        }
        return false
    }

    /// `kill -9` once `condition` holds; records an issue (and throws) when the process ended
    /// before, since then the test shows nothing about an interruption.
    ///
    /// The process runs in slices of about 2 ms (SIGCONT, then SIGSTOP) and `condition` is checked
    /// while it is stopped, so that however loaded the machine, the check cannot be outrun: a run
    /// whose stages each take longer than a slice is killed in the stage where `condition` first
    /// holds.
    func kill9(when condition: () -> Bool, timeout: Double = 300, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let pid = process.processIdentifier
        let deadline = Date().addingTimeInterval(timeout)
        var held = false
        while Date() < deadline, process.isRunning {
            kill(pid, SIGSTOP)
            guard waitUntilStopped() else { break }
            if condition() {
                held = true
                break
            }
            kill(pid, SIGCONT)
            usleep(2000)
        }
        guard held, process.isRunning else {
            kill(pid, SIGCONT)
            let status = process.isRunning ? "still running" : "status \(process.terminationStatus)"
            Issue.record("deltaplan \(arguments.joined(separator: " ")) ended (\(status)) before the moment to kill it; stderr: \(errors)",
                         sourceLocation: sourceLocation)
            throw CLIFailure("not killed mid-run")
        }
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    /// `kill -9` once the process has stopped itself (run with `DELTAPLAN_STOP_AFTER=N`: right after
    /// its Nth finished matrix, whatever the load); records an issue (and throws) when it ended or
    /// `timeout` seconds passed first.
    func kill9AtStop(timeout: Double = 600, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, process.isRunning, !isStopped() { usleep(2000) }
        guard process.isRunning, isStopped() else {
            let status = process.isRunning ? "still running after \(Int(timeout)) s" : "status \(process.terminationStatus)"
            Issue.record("deltaplan \(arguments.joined(separator: " ")) never stopped at its stop point (\(status)); stderr: \(errors)",
                         sourceLocation: sourceLocation)
            throw CLIFailure("not killed mid-run")
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Whether every thread of the process is stopped (`T` in /proc/PID/task/*/stat).
    private func isStopped() -> Bool {
        let tasks = "/proc/\(process.processIdentifier)/task"
        guard let threads = try? FileManager.default.contentsOfDirectory(atPath: tasks), !threads.isEmpty else { return false }
        return threads.allSatisfy { thread in
            guard let stat = try? String(contentsOfFile: "\(tasks)/\(thread)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return true }  // a thread that just ended
            return stat[stat.index(close, offsetBy: 2)...].hasPrefix("T")
        }
    }

    /// Waits (up to a second) until every thread of the process is stopped (`T` in
    /// /proc/PID/task/*/stat); false when the process ended.
    private func waitUntilStopped() -> Bool {
        let deadline = Date().addingTimeInterval(1)
        while Date() < deadline {
            guard process.isRunning else { return false }
            if isStopped() { return true }
            usleep(200)
        }
        return process.isRunning
    }

    /// Whether the process ended by SIGKILL.
    var wasKilled: Bool {
        !process.isRunning && process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL
    }
}

/// The names in `directory`, sorted; hidden ones (temporaries) only with `hidden`.
func listing(_ directory: URL, hidden: Bool = false) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
        .filter { hidden || !$0.hasPrefix(".") }.sorted()
}

/// Every regular file under `directory` (relative path → bytes), hidden ones included.
func fileContents(under directory: URL) throws -> [String: Data] {
    var out: [String: Data] = [:]
    let base = directory.resolvingSymlinksInPath().path
    guard let walker = FileManager.default.enumerator(atPath: base) else { return out }
    for case let relative as String in walker {
        let url = URL(fileURLWithPath: base).appendingPathComponent(relative)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue {
            out[relative] = try Data(contentsOf: url)
        }
    }
    return out
}

/// The relative paths whose contents differ between two directory trees (present in one only, or
/// with other bytes), sorted: empty when the trees are byte-identical. Names what differs, where a
/// comparison of the whole trees would only say that something does.
func differingFiles(_ directory: URL, _ reference: URL) throws -> [String] {
    let (a, b) = (try fileContents(under: directory), try fileContents(under: reference))
    return Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
}
