import Analysis
import Foundation
import ModelProfiles
import Testing
@testable import deltaplan

/// `footprint --gpu-memory G --store NAME=STORE …`: the fleet that the memory left after the base
/// holds is the one `deltaplan fleet` plans with that budget.
@Suite struct FootprintFleetTests {
    @Test func sharedGPUIsTheFleetOfTheMemoryLeft() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 1)
        let pair = try SyntheticPair(profile: profile, seed: 3, tokens: 64, sampleRows: 0).write(to: dir.url.appendingPathComponent("pair"))
        for name in ["a", "b"] {
            _ = try Analyzer(base: pair.base, finetuned: pair.finetuned, calibration: pair.calibration,
                             options: AnalysisOptions(seed: name == "a" ? 1 : 2), store: dir.url.appendingPathComponent(name)).run()
        }
        // M, the full model's bytes, as footprint reports it.
        let plain = try DeltaplanProcess(["footprint", "--profile", "llama-2-7b", "--models", "1"], logs: dir.url)
        plain.process.waitUntilExit()
        let line = try #require(plain.output.split(separator: "\n").first { $0.contains("full model M") })
        let bytesField = line.split(separator: "=").dropFirst(2).first?.split(separator: " ").first
        let model = try #require(bytesField.flatMap { Int($0) }, "\(line)")
        let left = 9_000  // bytes for the two deltas' planned matrices

        let shared = try DeltaplanProcess(["footprint", "--profile", "llama-2-7b", "--models", "1", "--gpu-memory", "\(model + left)B",
                                           "--share-unplanned", "--store", "a=\(dir("a"))", "--store", "b=\(dir("b"))"], logs: dir.url)
        shared.process.waitUntilExit()
        #expect(shared.process.terminationStatus == 0, "\(shared.errors)")
        let fleet = try DeltaplanProcess(["fleet", "--store", "a=\(dir("a"))", "--store", "b=\(dir("b"))", "--budget", "\(left)B",
                                          "--out", dir("fleet")], logs: dir.url)
        fleet.process.waitUntilExit()
        #expect(fleet.process.terminationStatus == 0, "\(fleet.errors)")
        let table = try #require(fleet.output.components(separatedBy: "wrote ").first)
        #expect(shared.output.contains("2 fine-tunes sharing"))
        #expect(shared.output.hasSuffix(table), "footprint:\n\(shared.output)\nfleet:\n\(table)")

        // Carried tensors count per delta: the same G with them leaves nothing here.
        let carried = try DeltaplanProcess(["footprint", "--profile", "llama-2-7b", "--models", "1", "--gpu-memory", "\(model + left)B",
                                            "--store", "a=\(dir("a"))", "--store", "b=\(dir("b"))"], logs: dir.url)
        carried.process.waitUntilExit()
        #expect(carried.process.terminationStatus != 0 && carried.errors.contains("holds no deltas"), "\(carried.errors)")
    }
}
