import ArgumentParser
import Foundation
import Optimizer
import Testing
@testable import deltaplan

/// `run()` on bad input: arguments that parse, files that are missing, are not what they claim,
/// or are an interrupted store. Every failure exits with status 1 (`ExitCode.failure`) and a
/// message naming the path or value to fix; commands that wrap library errors in `CLIFailure`
/// are checked to do so.
@Suite struct RunFailureTests {
    /// Checks the outcome of `error`: status 1, every text in `names` in the message, and the
    /// `CLIFailure` type when `wrapped`.
    private func check(_ error: any Error, names: [String], wrapped: Bool = true,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let outcome = Outcome(error)
        #expect(outcome.exitCode == .failure, sourceLocation: sourceLocation)
        if wrapped { #expect(error is CLIFailure, "\(type(of: error))", sourceLocation: sourceLocation) }
        for name in names {
            #expect(outcome.message.contains(name), "\(outcome.message)", sourceLocation: sourceLocation)
        }
    }

    @Test func missingInputFiles() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let missing = dir("missing")
        // Commands that report the library's error as it is (exit status and message as CLIFailure's).
        check(try await runFailure(["inspect", missing]), names: [missing, "no such file"], wrapped: false)
        check(try await runFailure(["calibration", "inspect", missing]), names: [missing], wrapped: false)
        check(try await runFailure(["calibration", "import-imatrix", missing, "--out", dir("c.safetensors")]),
              names: [missing, "no such file"], wrapped: false)
        check(try await runFailure(["spectrum", missing]), names: [missing, "not a spectrum store"], wrapped: false)
        check(try await runFailure(["analyze", "--base", missing, "--finetuned", missing, "--out", dir("store")]),
              names: [missing], wrapped: false)
        #expect(!FileManager.default.fileExists(atPath: dir("c.safetensors")))
        // Commands that wrap it in CLIFailure.
        check(try await runFailure(["plan", missing, "--budget", "1/16"]), names: [missing, "not a spectrum store"])
        check(try await runFailure(["compare", missing]), names: [missing, "not a spectrum store"])
        check(try await runFailure(["compress", missing, "--plan", dir("plan.json"), "--out", dir("artifact")]),
              names: [missing, "not a spectrum store"])
        check(try await runFailure(["evaluate", "--artifact", missing, "--base", missing, "--finetuned", missing]),
              names: [missing, "not an artifact"])
        check(try await runFailure(["merge", "--base", missing, "--artifact", missing, "--out", dir("merged")]),
              names: [missing, "not an artifact"])
        check(try await runFailure(["serve", "--data-dir", dir("data"), "--token-file", missing]), names: [missing])
        check(try await runFailure(["distil", "export", missing, "--out", dir("factors.safetensors")]), names: [missing, "not an artifact"])
        check(try await runFailure(["distil", "apply", missing, "--fitted", missing, "--out", dir("distilled")]),
              names: [missing, "not an artifact"])
        #expect(!FileManager.default.fileExists(atPath: dir("factors.safetensors")))
        #expect(!FileManager.default.fileExists(atPath: dir("distilled")))
        #expect(!FileManager.default.fileExists(atPath: dir("artifact")))
        #expect(!FileManager.default.fileExists(atPath: dir("merged")))
    }

    /// An existing directory that holds no store, and files that are not what the command reads.
    @Test func inputsOfTheWrongKind() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let empty = dir("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        check(try await runFailure(["plan", empty, "--budget", "1/16"]), names: [empty, "manifest.json", "not a spectrum store"])
        check(try await runFailure(["spectrum", empty]), names: [empty, "not a spectrum store"], wrapped: false)
        check(try await runFailure(["analyze", "--finalize", empty]), names: [empty, "no shard has finished"], wrapped: false)
        check(try await runFailure(["inspect", empty]), names: [empty], wrapped: false)
        check(try await runFailure(["merge", "--base", empty, "--artifact", empty, "--out", dir("merged")]),
              names: [empty, "not an artifact"])

        let text = dir("notes.txt")
        try Data("not a tensor file\n".utf8).write(to: URL(fileURLWithPath: text))
        check(try await runFailure(["inspect", text]), names: [text], wrapped: false)
        check(try await runFailure(["calibration", "inspect", text]), names: [text], wrapped: false)
        check(try await runFailure(["calibration", "import-imatrix", text, "--out", dir("c.safetensors")]),
              names: [text], wrapped: false)
        // demo's working directory must be a directory: it fails at its first step, synth.
        check(try await runFailure(["demo", "--workdir", text]), names: [text], wrapped: false)

        // A store whose manifest is not JSON.
        let broken = dir("broken-store")
        try FileManager.default.createDirectory(atPath: broken, withIntermediateDirectories: true)
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: broken).appendingPathComponent("manifest.json"))
        check(try await runFailure(["plan", broken, "--budget", "1/16"]), names: [broken, "damaged", "manifest.json"])
        check(try await runFailure(["compare", broken]), names: [broken, "damaged", "manifest.json"])
    }

    /// Names that resolve to nothing: a profile, a preset, a strategy, a strategy that needs an
    /// error model when planning from shapes.
    @Test func unknownNames() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        check(try await runFailure(["plan", "--profile", "llama-9", "--budget", "1/16"]),
              names: ["no model profile named 'llama-9'", "llama-2-7b"])
        check(try await runFailure(["plan", "--profile", "llama-2-7b", "--budget", "1/16", "--strategy", "greedy"]),
              names: ["strategy 'greedy' needs measured spectra", "--strategy preset:NAME"])
        check(try await runFailure(["footprint", "--profile", "llama-9"]), names: ["no model profile named 'llama-9'"])
        check(try await runFailure(["footprint", "--profile", "llama-2-7b", "--preset", "delta-go"]),
              names: ["no precision preset named 'delta-go'"])
        check(try await runFailure(["synth", "--profile", "llama-9", "--out", dir("pair")]),
              names: ["no model profile named 'llama-9'"], wrapped: false)
        check(try await runFailure(["calibration", "import-imatrix", dir("imatrix.gguf"), "--out", dir("c.safetensors"), "--profile", "llama-9"]),
              names: ["no model profile named 'llama-9'"], wrapped: false)
        #expect(!FileManager.default.fileExists(atPath: dir("pair")))
    }

    /// A store left incomplete (manifest `complete: false`, one matrix pending) is refused by every
    /// later stage, naming the store and the pending matrix; the complete original is accepted.
    @Test func incompleteStore() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (_, store) = try analyzedPair(in: dir)
        let incomplete = dir("incomplete-store")
        let pending = try makeIncompleteCopy(of: store, at: incomplete)
        let names = [incomplete, "is incomplete", pending]

        try await run(["spectrum", store, "--format", "json"])
        check(try await runFailure(["spectrum", incomplete]), names: names, wrapped: false)
        check(try await runFailure(["plan", incomplete, "--budget", "1/8"]), names: names)
        check(try await runFailure(["compare", incomplete, "--budgets", "1/8"]), names: names)
        check(try await runFailure(["compress", incomplete, "--plan", dir("plan.json"), "--out", dir("artifact")]), names: names)
        #expect(!FileManager.default.fileExists(atPath: dir("artifact")))
    }

    /// compress with a plan file that is missing, is not JSON, or is JSON missing a field; each
    /// refused naming the file (and the field), with no artifact written.
    @Test func badPlanFiles() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (_, store) = try analyzedPair(in: dir)
        let artifact = dir("artifact")
        let missing = dir("missing.json")
        check(try await runFailure(["compress", store, "--plan", missing, "--out", artifact]), names: [missing])
        let notJSON = dir("plan.txt")
        try Data("budget: 1/16\n".utf8).write(to: URL(fileURLWithPath: notJSON))
        check(try await runFailure(["compress", store, "--plan", notJSON, "--out", artifact]), names: ["invalid plan \(notJSON)"])
        let noVersion = dir("plan.json")
        try Data(#"{"matrices": []}"#.utf8).write(to: URL(fileURLWithPath: noVersion))
        check(try await runFailure(["compress", store, "--plan", noVersion, "--out", artifact]),
              names: ["invalid plan \(noVersion)", "formatVersion", "missing"])
        #expect(!FileManager.default.fileExists(atPath: artifact))
    }

    /// A plan made from a profile belongs to no store: compress refuses it. Then a real plan of the
    /// store compresses and merges through the CLI, and evaluate, pointed at an incomplete store,
    /// says which store it could not open and what to pass instead; merge names a missing base.
    @Test func pipelineOnATinyStore() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (paths, store) = try analyzedPair(in: dir)
        let profilePlan = dir("profile-plan.json")
        try await run(["plan", "--profile", "llama-2-7b", "--budget", "1/16", "--out", profilePlan])
        check(try await runFailure(["compress", store, "--plan", profilePlan, "--out", dir("wrong")]),
              names: ["plan \(profilePlan) does not belong to this store", "its source is profile llama-2-7b"])
        #expect(!FileManager.default.fileExists(atPath: dir("wrong")))

        let plan = dir("plan.json")
        try await run(["plan", store, "--budget", "1/8", "--method", "rtn", "--out", plan])
        #expect(try Plan.read(from: URL(fileURLWithPath: plan)).source.kind == "store")
        let artifact = dir("artifact")
        try await run(["compress", store, "--plan", plan, "--method", "rtn", "--out", artifact])
        #expect(FileManager.default.fileExists(atPath: artifact + "/manifest.json"))

        let incomplete = dir("incomplete-store")
        try makeIncompleteCopy(of: store, at: incomplete)
        check(try await runFailure(["evaluate", "--artifact", artifact, "--base", paths.base.path, "--finetuned", paths.finetuned.path,
                                    "--store", incomplete]),
              names: ["cannot open the spectrum store \(incomplete)", "is incomplete", "pass --store"])
        let missingBase = dir("missing-base")
        check(try await runFailure(["merge", "--base", missingBase, "--artifact", artifact, "--out", dir("merged")]), names: [missingBase])
        #expect(!FileManager.default.fileExists(atPath: dir("merged")))
        try await run(["merge", "--base", paths.base.path, "--artifact", artifact, "--out", dir("merged")])
        #expect(FileManager.default.fileExists(atPath: dir("merged")))
    }
}
