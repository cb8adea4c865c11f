import Analysis
import ArgumentParser
import Foundation
import ModelProfiles
import Testing
@testable import deltaplan

/// A fresh temporary directory, removed by the caller with `cleanUp()`.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func cleanUp() { try? FileManager.default.removeItem(at: url) }

    /// The path of `name` inside the directory (not created).
    func callAsFunction(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// What the tool prints after `Error:` and the status it exits with, by argument-parser's own
/// mapping (the one the `@main` entry point uses).
struct Outcome {
    var message: String
    var exitCode: ExitCode

    init(_ error: any Error) {
        message = DeltaPlan.message(for: error)
        exitCode = DeltaPlan.exitCode(for: error)
    }
}

/// The outcome of parsing `arguments` from the root command (parsing runs every `validate()` on
/// the way), or nil when they parse.
func parseFailure(_ arguments: [String]) -> Outcome? {
    do {
        _ = try DeltaPlan.parseAsRoot(arguments)
        return nil
    } catch {
        return Outcome(error)
    }
}

/// Parses `arguments` (which must parse) and runs the command they select in-process.
func run(_ arguments: [String]) async throws {
    var command = try DeltaPlan.parseAsRoot(arguments)
    if var asyncCommand = command as? any AsyncParsableCommand {
        try await asyncCommand.run()
    } else {
        try command.run()
    }
}

/// The error `run(arguments)` throws; records an issue (and throws) when it succeeds.
func runFailure(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws -> any Error {
    do {
        try await run(arguments)
    } catch {
        return error
    }
    Issue.record("deltaplan \(arguments.joined(separator: " ")) succeeded", sourceLocation: sourceLocation)
    throw CLIFailure("unexpected success")
}

/// A one-layer Llama-2-7B-shaped pair at 1/64 scale (q/k/v/o 64×64, gate/up 172×64, down 64×172)
/// with calibration, analyzed into `dir/store`. Takes well under a second.
func analyzedPair(in dir: TemporaryDirectory) throws -> (paths: SyntheticPair.Paths, store: String) {
    let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 1)
    let paths = try SyntheticPair(profile: profile, seed: 5, tokens: 128, sampleRows: 0).write(to: dir.url)
    let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                             options: AnalysisOptions(), store: dir.url.appendingPathComponent("store")).run()
    return (paths, store.url.path)
}

/// A copy of the complete store at `store`, at `copy`, that reads as interrupted: its manifest
/// says `complete: false` and its last matrix is still `pending`. Returns that matrix's name.
@discardableResult
func makeIncompleteCopy(of store: String, at copy: String) throws -> String {
    try FileManager.default.copyItem(atPath: store, toPath: copy)
    let manifestURL = URL(fileURLWithPath: copy).appendingPathComponent(SpectrumStore.manifestName)
    var manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as? [String: Any])
    #expect(manifest["complete"] as? Bool == true)
    manifest["complete"] = false
    var matrices = try #require(manifest["matrices"] as? [[String: Any]])
    let popped = matrices.popLast()
    var last = try #require(popped)
    last["status"] = "pending"
    manifest["matrices"] = matrices + [last]
    try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys]).write(to: manifestURL)
    return try #require(last["name"] as? String)
}
