import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Testing
@testable import deltaplan

/// `plan STORE --pin … --bits-for …` through the CLI: the plan it writes, what `show` and `diff`
/// say about pinned matrices, and its errors (each naming the pin).
@Suite struct PinCommandTests {
    @Test func pinnedPlansAreWrittenShownAndDiffed() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (_, store) = try analyzedPair(in: dir)
        try await run(["plan", store, "--budget", "1/4", "--pin", "q_proj=keep", "--pin", "o_proj=drop", "--pin", "v_proj=single-3",
                       "--bits-for", "mlp=8,2", "--out", dir("pinned.json"), "--plot", dir("pinned.svg")])
        try await run(["plan", store, "--budget", "1/4", "--out", dir("free.json")])
        let pinned = try Plan.read(from: URL(fileURLWithPath: dir("pinned.json")))
        let free = try Plan.read(from: URL(fileURLWithPath: dir("free.json")))
        let q = try #require(pinned.matrices.first { $0.name.contains("q_proj") })
        #expect(q.dense && q.pin?.description == "q_proj=keep")
        #expect(pinned.matrices.first { $0.name.contains("o_proj") }?.segments == [])
        #expect(pinned.matrices.filter { $0.name.contains("mlp") }.allSatisfy { $0.bits == [8, 2] && $0.segments.allSatisfy { [8, 2].contains($0.bits) } })
        #expect(pinned.totals.storageBits <= pinned.budget.bits)

        let summary = planSummary(pinned)
        #expect(summary.contains("pin 'q_proj=keep': 1 matrix"), "\(summary)")
        #expect(summary.contains("pin 'v_proj=single-3': 1 matrix"), "\(summary)")
        #expect(summary.contains("bits-for 'mlp=8,2': 3 matrices"), "\(summary)")
        #expect(summary.contains("pin keep (dense F16)") && summary.contains("bits 8,2"), "\(summary)")
        #expect(!planSummary(free).contains("pin"))

        let diff = diffText(try PlanDiff(free, pinned), a: "free", b: "pinned")
        #expect(diff.contains("dense F16 (pin keep)") && diff.contains("none (pin drop)"), "\(diff)")
        let svg = try String(contentsOfFile: dir("pinned.svg"), encoding: .utf8)
        #expect(svg.contains("kept dense (F16), pinned 'q_proj=keep'") && svg.contains("0 (kept dense)"))
    }

    /// `plan --verify` through the CLI: the plan's predictions are measured, the summary says by
    /// how much the error model was off, and the bytes are the library's (as the service's are).
    @Test func verifiedPlansSayWhatWasMeasured() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (_, store) = try analyzedPair(in: dir)
        try await run(["plan", store, "--budget", "1/8", "--verify", "1", "--threads", "2", "--out", dir("verified.json")])
        let verified = try Plan.read(from: URL(fileURLWithPath: dir("verified.json")))
        let v = try #require(verified.report.verification)
        #expect(v.plansMeasured >= 1 && v.rounds <= 1)
        let summary = planSummary(verified)
        #expect(summary.contains("verified: the predicted error is measured") && summary.contains("measured / model = "), "\(summary)")
        let planning = try StorePlanning(store: URL(fileURLWithPath: store))
        func exact(_ planning: StorePlanning) throws -> Plan {
            try planning.plan(budget: try GivenBudget(parsing: "1/8"), storage: StorageModel(), scope: Strategy.exact.defaultScope,
                              menu: BitMenu.default, strategy: .exact, seed: 0)
        }
        let library = try planning.verified(try exact(planning), rounds: 1, replan: { try? exact($0) })
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir("verified.json"))) == Data(try library.encoded()))
    }

    /// A store whose fine-tuned checkpoint changed since `analyze` cannot verify a plan: the error
    /// names the checkpoint, and no plan is written.
    @Test func verifyingAgainstAChangedCheckpointFails() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (paths, store) = try analyzedPair(in: dir)
        let shard = try #require(try FileManager.default.contentsOfDirectory(at: paths.finetuned, includingPropertiesForKeys: nil)
            .first { $0.pathExtension == "safetensors" })
        // One data byte changed in place: the header still parses, the file is not the one analyzed.
        let handle = try FileHandle(forUpdating: shard)
        let end = try handle.seekToEnd()
        try handle.seek(toOffset: end - 1)
        let last = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: end - 1)
        try handle.write(contentsOf: Data([last ^ 0xFF]))
        try handle.close()
        let outcome = Outcome(try await runFailure(["plan", store, "--budget", "1/8", "--verify", "0", "--out", dir("v.json")]))
        #expect(outcome.message.contains(paths.finetuned.lastPathComponent) && outcome.message.contains("fine-tuned")
                && outcome.exitCode != .success, "\(outcome.message)")
        #expect(!FileManager.default.fileExists(atPath: dir("v.json")))
    }

    /// Errors found against the store name the pin, before the measurement pass; pins over the
    /// budget say by how much.
    @Test func pinsThatDoNotFitAreRunFailures() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (_, store) = try analyzedPair(in: dir)
        func message(_ arguments: [String]) async throws -> String {
            Outcome(try await runFailure(["plan", store, "--budget", "1/16", "--out", dir("p.json")] + arguments)).message
        }
        let none = try await message(["--pin", "lm_head=keep"])
        #expect(none.contains("pin 'lm_head=keep' matches none of the 7 planned matrices"), "\(none)")
        // Checked before measuring: no error tables were written.
        #expect(!FileManager.default.fileExists(atPath: URL(fileURLWithPath: store).appendingPathComponent("errors").path))
        let conflict = try await message(["--pin", "proj=drop", "--pin", "q_proj=keep"])
        #expect(conflict.contains("pins 'proj=drop' and 'q_proj=keep' both match model.layers.0.self_attn.q_proj.weight"), "\(conflict)")
        let rank = try await message(["--pin", "q_proj=8:100000"])
        #expect(rank.contains("keeps 100000 vectors of model.layers.0.self_attn.q_proj.weight"), "\(rank)")
        let empty = try await message(["--bits-for", "mlp=16", "--bits", "8,4,2"])
        #expect(empty.contains("bits-for rule 'mlp=16' leaves") && empty.contains("no width"), "\(empty)")
        let over = try await message(["--pin", "proj=keep"])
        #expect(over.contains("the pins alone need") && over.contains("more than the budget of") && over.contains("'proj=keep'"), "\(over)")
        #expect(!FileManager.default.fileExists(atPath: dir("p.json")))
    }
}
