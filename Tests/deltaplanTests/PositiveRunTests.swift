import ArgumentParser
import ArtifactFormat
import Checkpoint
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Testing
@testable import deltaplan

/// Runs that succeed, so the failure tests are known to fail for their bad input only.
@Suite struct PositiveRunTests {
    /// README's example: the plan `deltaplan plan --profile … --out FILE` writes is byte for byte the
    /// library's `planFromShapes` with the same settings (per-type scope, the whole bit menu, seed 0).
    @Test func profilePlanMatchesTheLibrary() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let out = dir("plan.json")
        try await run(["plan", "--profile", "llama-2-7b", "--budget", "1/16", "--strategy", "preset:delta-come",
                       "--accounting", "paper", "--out", out])
        let written = try Data(contentsOf: URL(fileURLWithPath: out))

        let library = try ProfileLibrary.builtIn()
        let expected = try planFromShapes(
            profile: try library.model(named: "llama-2-7b"), preset: try library.preset(named: "delta-come"),
            budget: try GivenBudget(parsing: "1/16"), storage: StorageModel(accounting: .paper, groupSize: 128),
            scope: .type, menu: try BitMenu.parse("16,8,4,3,2,1,0"), seed: 0, toolVersion: DeltaPlanVersion.string)
        #expect(written == (try expected.encoded()))

        // Another accounting gives another file: the comparison above can tell.
        let artifactAccounting = dir("artifact-plan.json")
        try await run(["plan", "--profile", "llama-2-7b", "--budget", "1/16", "--strategy", "preset:delta-come",
                       "--out", artifactAccounting])
        #expect(try Data(contentsOf: URL(fileURLWithPath: artifactAccounting)) != written)
        #expect(try Plan.read(from: URL(fileURLWithPath: artifactAccounting)).accounting == .artifact)

        // diff: the two accountings keep different numbers of vectors in some matrices.
        let diff = try PlanDiff(try Plan.read(from: URL(fileURLWithPath: out)), try Plan.read(from: URL(fileURLWithPath: artifactAccounting)))
        #expect(!diff.matrices.isEmpty)
        #expect(diffText(diff, a: out, b: artifactAccounting).contains("\(diff.matrices.count) matrices differ:"))
        try await run(["diff", out, artifactAccounting])
        let missing = try await runFailure(["diff", out, dir("nothing.json")])
        #expect(Outcome(missing).message.contains("nothing.json"))
    }

    /// `distil export` and `distil apply` through the CLI: the fitted file's σ (F16-rounded) are the
    /// new artifact's, which records the file; a file fitted for another artifact is refused naming both.
    @Test func distilExportAndApply() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (_, store) = try analyzedPair(in: dir)
        try await run(["plan", store, "--budget", "1/16", "--out", dir("plan.json")])
        try await run(["compress", store, "--plan", dir("plan.json"), "--out", dir("artifact")])
        try await run(["distil", "export", dir("artifact"), "--out", dir("factors.safetensors")])
        let factors = try SafetensorsFile(contentsOf: URL(fileURLWithPath: dir("factors.safetensors")))
        let sigmaNames = factors.tensors.map(\.name).filter { $0.hasSuffix(".sigma") }
        #expect(!sigmaNames.isEmpty && factors.tensors.count == 3 * sigmaNames.count)
        func writeSigma(_ path: String, hash: String) throws {
            let writer = try SafetensorsWriter(url: URL(fileURLWithPath: path), tensors: sigmaNames.map {
                TensorDeclaration(name: $0, dtype: .f32, shape: try factors.info($0).shape)
            }, metadata: [Distillation.artifactKey: hash])
            for name in sigmaNames { try writer.write(name, floats: try factors.floats(name).map { $0 * 1.5 }) }
            try writer.finish()
        }
        let artifact = try Artifact(at: URL(fileURLWithPath: dir("artifact")))
        try writeSigma(dir("sigma.safetensors"), hash: artifact.manifest.delta.sha256)
        try await run(["distil", "apply", dir("artifact"), "--fitted", dir("sigma.safetensors"), "--out", dir("distilled")])
        let distilled = try Artifact(at: URL(fileURLWithPath: dir("distilled")))
        #expect(distilled.manifest.distillation?.path == dir("sigma.safetensors"))
        for record in distilled.manifest.matrices {
            for (s, segment) in zip(record.segments, try distilled.segments(of: record)) {
                #expect(segment.singularValues == (try factors.floats(s.prefix + ".sigma")).map { Float16($0 * 1.5) })
            }
        }
        try writeSigma(dir("other.safetensors"), hash: String(repeating: "0", count: 64))
        let refused = try await runFailure(["distil", "apply", dir("artifact"), "--fitted", dir("other.safetensors"), "--out", dir("never")])
        #expect(Outcome(refused).exitCode == .failure)
        #expect(Outcome(refused).message.contains(dir("other.safetensors")) && Outcome(refused).message.contains(dir("artifact")))
        #expect(!FileManager.default.fileExists(atPath: dir("never")))
    }

    /// `plan --plot` and `show --plot` draw the same picture of one plan, `show` prints the summary
    /// `plan` printed, and a plot that cannot be written (its directory removed after parsing) is
    /// an error naming it, with nothing left behind.
    @Test func planAndShowDrawThePlan() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        try await run(["plan", "--profile", "llama-2-7b", "--budget", "1/16", "--out", dir("plan.json"), "--plot", dir("plan.svg")])
        try await run(["show", dir("plan.json"), "--plot", dir("show.svg")])
        let plan = try Plan.read(from: URL(fileURLWithPath: dir("plan.json")))
        let svg = try String(contentsOfFile: dir("plan.svg"), encoding: .utf8)
        #expect(svg == plan.svg() && svg.hasPrefix("<svg"))
        #expect(try String(contentsOfFile: dir("show.svg"), encoding: .utf8) == svg)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == ["plan.json", "plan.svg", "show.svg"])

        #expect(parseFailure(["show", dir("plan.json"), "--plot", dir("gone/plot.svg")]) != nil)
        try FileManager.default.createDirectory(atPath: dir("gone"), withIntermediateDirectories: false)
        let show = try #require(try DeltaPlan.parseAsRoot(["show", dir("plan.json"), "--plot", dir("gone/plot.svg")]) as? ShowCommand)
        try FileManager.default.removeItem(atPath: dir("gone"))
        let failure = try await runFailure(["show", dir("plan.json"), "--plot", dir("plan.json/plot.svg")])
        #expect(Outcome(failure).message.contains("plan.json is not a directory"))
        do { try show.run(); Issue.record("wrote into a removed directory") } catch {
            #expect(Outcome(error).message.contains(dir("gone/plot.svg")), "\(Outcome(error).message)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir("gone")))
    }

    /// The parsed command is the one the arguments name, with their values.
    @Test func parsingSelectsTheSubcommand() throws {
        let plan = try #require(try DeltaPlan.parseAsRoot(["plan", "--profile", "llama-2-7b", "--budget", "850MiB", "--bits", "8,4,2"])
            as? PlanCommand)
        #expect(plan.profile == "llama-2-7b")
        #expect(plan.store == nil)
        #expect(plan.storageOptions.budget?.budget == .bytes(850 << 20) && plan.storageOptions.budget?.text == "850MiB")
        #expect(plan.bits == [8, 4, 2])
        #expect(try plan.resolvedStrategy().name == "preset:delta-come")
        #expect(try DeltaPlan.parseAsRoot(["calibration", "import-imatrix", "i.gguf", "--out", "c.safetensors"]) is ImportImatrix)
        #expect(try DeltaPlan.parseAsRoot(["profiles"]) is Profiles)
        #expect(try DeltaPlan.parseAsRoot(["serve", "--data-dir", "d"]) is Serve)
    }

    @Test func profilesRuns() async throws {
        try await run(["profiles"])
    }

    @Test func footprintRuns() async throws {
        try await run(["footprint", "--profile", "llama-2-7b", "--models", "2,4", "--gpu-memory", "80GiB"])
    }

    /// `--version` ends parsing with status 0 and the tool's version, not as a failure.
    @Test func versionExitsZero() throws {
        let outcome = try #require(parseFailure(["--version"]))
        #expect(outcome.exitCode == .success)
        #expect(outcome.message == DeltaPlanVersion.string)
    }
}
