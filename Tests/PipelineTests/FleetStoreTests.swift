import Analysis
import ArtifactFormat
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Testing

/// `deltaplan fleet` on real stores: one base, one budget, plans that compress; stores of another
/// base refused by name.
@Suite struct FleetStoreTests {
    static func store(_ dir: URL, seed: UInt64) throws -> (SyntheticPair.Paths, SpectrumStore) {
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 1)
        let paths = try SyntheticPair(profile: profile, seed: seed, tokens: 160, sampleRows: 160).write(to: dir)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                                 options: AnalysisOptions(), store: dir.appendingPathComponent("store")).run()
        return (paths, store)
    }

    @Test func fleetOfStoresPlansWritesAndCompresses() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-fleet-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        // Two analyses of fine-tunes of one base (the same synthetic pair twice), one of another base.
        let (paths, first) = try Self.store(root.appendingPathComponent("a"), seed: 2)
        let (_, second) = try Self.store(root.appendingPathComponent("b"), seed: 2)
        let (_, other) = try Self.store(root.appendingPathComponent("c"), seed: 3)
        let stores = [FleetStore(name: "math", planning: try StorePlanning(store: first.url), weight: 2),
                      FleetStore(name: "code", planning: try StorePlanning(store: second.url), weight: 1)]
        let fleet = try planFleet(stores, budget: .ratio(1.0 / 16), storage: StorageModel(), menu: BitMenu.default,
                                  strategy: .exact, seed: 0)
        #expect(fleet.summary.storageBits <= fleet.summary.budget.bits)
        #expect(fleet.summary.members.map(\.name) == ["math", "code"])
        // Each member's plan records how its errors were measured, as a single model's plan does.
        #expect(fleet.plans.allSatisfy { $0.segmentOrder == stores[0].planning.measurement.order && $0.quantizer == stores[0].planning.measurement.quantizer })
        // Equal deltas, the heavier weight gets at least as much.
        #expect(fleet.summary.members[0].storageBits >= fleet.summary.members[1].storageBits)

        let out = root.appendingPathComponent("fleet")
        try fleet.write(names: ["math", "code"], to: out)
        let read = try Plan.read(from: out.appendingPathComponent("math.json"))
        #expect(read == fleet.plans[0])
        let summary = try JSONDecoder().decode(FleetSummary.self, from: Data(contentsOf: out.appendingPathComponent("fleet.json")))
        #expect(summary == fleet.summary)
        // Each plan is an ordinary plan of its store: compress takes it.
        let manifest = try compress(store: first, plan: read, calibration: try CalibrationSet(url: paths.calibration),
                                    options: CompressionOptions(toolVersion: "test"), to: root.appendingPathComponent("artifact"))
        #expect(manifest.matrices.count == read.matrices.count)

        // A quality floor on the lighter model, below what it got: met, recorded in its plan and in fleet.json.
        let floor = 0.8 * fleet.summary.members[1].predictedRelativeError
        var floored = stores
        floored[1].maxRelativeError = floor
        let withFloor = try planFleet(floored, budget: .ratio(1.0 / 16), storage: StorageModel(), menu: BitMenu.default,
                                      strategy: .exact, seed: 0)
        #expect(withFloor.summary.members[1].predictedRelativeError <= floor)
        #expect(withFloor.summary.members[1].maxRelativeError == floor && withFloor.plans[1].budget.target?.error == floor)
        #expect(withFloor.summary.weightedRelativeError >= fleet.summary.weightedRelativeError)
        #expect(withFloor.summary.storageBits <= withFloor.summary.budget.bits)
        try withFloor.write(names: ["math", "code"], to: out)
        #expect(try JSONDecoder().decode(FleetSummary.self, from: Data(contentsOf: out.appendingPathComponent("fleet.json"))) == withFloor.summary)
        #expect(try Plan.read(from: out.appendingPathComponent("code.json")) == withFloor.plans[1])

        do {
            _ = try planFleet(stores + [FleetStore(name: "chat", planning: try StorePlanning(store: other.url))],
                              budget: .ratio(1.0 / 16), storage: StorageModel(), menu: BitMenu.default, strategy: .exact, seed: 0)
            Issue.record("a store of another base was accepted")
        } catch let error as FleetError {
            guard case let .differentBases(a, b, _) = error else { Issue.record("\(error)"); return }
            #expect((a, b) == ("math", "chat"))
        }
    }

    /// A fleet's plans are ordinary plans of their stores: compressed and evaluated, their
    /// predictions are as true as those of the store's own plan at the same size (actual/predicted
    /// within 5 % as close to 1).
    @Test func fleetPlansPredictAsWellAsSingleModelPlans() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-fleet-eval-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let (paths, first) = try Self.store(root.appendingPathComponent("a"), seed: 5)
        let (_, second) = try Self.store(root.appendingPathComponent("b"), seed: 5)
        let stores = [FleetStore(name: "math", planning: try StorePlanning(store: first.url), weight: 3),
                      FleetStore(name: "code", planning: try StorePlanning(store: second.url), weight: 1)]
        let fleet = try planFleet(stores, budget: .ratio(1.0 / 16), storage: StorageModel(), menu: BitMenu.default, strategy: .exact, seed: 0)
        // Weights 3 : 1 on equal deltas: the shares differ, so the plans are not the single-model plan.
        #expect(fleet.summary.members[0].storageBits > fleet.summary.members[1].storageBits)
        let calibration = try CalibrationSet(url: paths.calibration)
        func actualOverPredicted(_ plan: Plan, _ store: SpectrumStore, _ name: String) throws -> Double {
            let out = root.appendingPathComponent("artifact-\(name)")
            _ = try compress(store: store, plan: plan, calibration: calibration, options: CompressionOptions(toolVersion: "test"), to: out)
            let report = try evaluate(artifact: try Artifact(at: out), base: paths.base, finetuned: paths.finetuned,
                                      calibration: calibration, store: store)
            return try #require(report.total.actualOverPredicted)
        }
        for (i, store) in [first, second].enumerated() {
            let name = fleet.summary.members[i].name
            let ratio = try actualOverPredicted(fleet.plans[i], store, name)
            // The reference: the store planned alone by exact in the share the fleet gave it.
            let single = try stores[i].planning.plan(budget: .bytes(fleet.summary.members[i].storageBits / 8 + 1), storage: StorageModel(),
                                                     scope: .global, menu: BitMenu.default, strategy: .exact, seed: 0)
            let reference = abs(log(try actualOverPredicted(single, store, "single-\(name)")))
            #expect(abs(log(ratio)) <= reference + 0.05, "\(name): actual/predicted \(ratio), single-model |log| \(reference)")
        }
    }
}
