import Foundation
import Testing

/// The repository's `Deploy/` folder, found from this file's path.
let deployDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../Deploy").standardizedFileURL

/// What a script printed and the status it exited with.
struct ScriptRun {
    var status: Int32
    var output: String
    var errors: String
}

/// Runs `executable arguments` with exactly `environment` (plus PATH), its output captured through files.
func runScript(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> ScriptRun {
    let logs = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-deploy-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: logs) }
    let outputURL = logs.appendingPathComponent("out"), errorURL = logs.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errorURL.path, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = environment.merging(["PATH": "/usr/local/bin:/usr/bin:/bin"]) { mine, _ in mine }
    process.standardOutput = try FileHandle(forWritingTo: outputURL)
    process.standardError = try FileHandle(forWritingTo: errorURL)
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return ScriptRun(status: process.terminationStatus,
                     output: try String(contentsOf: outputURL, encoding: .utf8),
                     errors: try String(contentsOf: errorURL, encoding: .utf8))
}

/// A stand-in `deltaplan` in a fresh directory: it prints each argument on a line of its own and exits
/// with `status`. Returns the directory (for PATH) and the executable's path.
struct FakeDeltaplan {
    let directory: URL
    var path: String { directory.appendingPathComponent("deltaplan").path }

    init(status: Int32 = 0) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-fake-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let script = "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\nexit \(status)\n"
        try script.write(to: directory.appendingPathComponent("deltaplan"), atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    }

    func cleanUp() { try? FileManager.default.removeItem(at: directory) }
}

/// The value following `option` in an argument list, if any.
func value(of option: String, in arguments: [String]) -> String? {
    guard let i = arguments.firstIndex(of: option), i + 1 < arguments.count else { return nil }
    return arguments[i + 1]
}
