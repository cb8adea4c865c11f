import Testing
import ModelProfiles
@testable import Optimizer

@Suite struct PlanStorageAccountingTests {
    /// h_out = 300, h_in = 200 (h_out + h_in = 500), group size 128; ⌈200/128⌉ = 2.
    /// Allocation: 2 vectors at 16 bits, 3 at 8, 130 at 2, 5 at 1.
    ///
    /// - 16 bits, r = 2: payload 16·2·500 = 16000; no metadata; σ 16·2 = 32 → 16032.
    /// - 8 bits, r = 3: payload 8·3·500 = 12000; groups 3·2 (Vᵀ) + 300·⌈3/128⌉ = 300 (U) = 306,
    ///   32·306 = 9792; σ 48 → 21840.
    /// - 2 bits, r = 130: payload 2·130·500 = 130000; groups 130·2 + 300·⌈130/128⌉ = 260 + 600 = 860,
    ///   32·860 = 27520; σ 2080 → 159600.
    /// - 1 bit, r = 5: payload 1·5·500 = 2500; row scales 16·(5 + 300) = 4880; σ 80 → 7460.
    /// Artifact total 204932; paper total (payloads) 160500.
    @Test func handComputedSmallShape() {
        let a = Allocation(counts: [16: 2, 8: 3, 2: 130, 1: 5])
        let artifact = StorageModel(accounting: .artifact, groupSize: 128)
        let paper = StorageModel(accounting: .paper, groupSize: 128)
        #expect(artifact.segmentBits(bits: 16, count: 2, rows: 300, columns: 200) == 16032)
        #expect(artifact.segmentBits(bits: 8, count: 3, rows: 300, columns: 200) == 21840)
        #expect(artifact.segmentBits(bits: 2, count: 130, rows: 300, columns: 200) == 159_600)
        #expect(artifact.segmentBits(bits: 1, count: 5, rows: 300, columns: 200) == 7460)
        #expect(artifact.bits(of: a, rows: 300, columns: 200) == 204_932)
        #expect(paper.bits(of: a, rows: 300, columns: 200) == 160_500)
        #expect(a.segments == [Segment(start: 0, end: 2, bits: 16), Segment(start: 2, end: 5, bits: 8),
                               Segment(start: 5, end: 135, bits: 2), Segment(start: 135, end: 140, bits: 1)])
    }

    /// The paper's released numbers through the shape-only planner on the real Llama-2-7B shapes:
    /// 4096×4096: (4096² − 112·8192) / (2·8192) = 968 exactly; 11008×4096 and 4096×11008:
    /// ⌊(11008·4096 − 112·15104) / (2·15104)⌋ = ⌊1436.61⌋ = 1436 (the script says 1428).
    @Test(arguments: [Scope.type, .matrix, .global])
    func paperColumnsThroughTheShapePlanner(scope: Scope) throws {
        let library = try ProfileLibrary.builtIn()
        let plan = try planFromShapes(
            profile: library.model(named: "llama-2-7b"), preset: library.preset(named: "delta-come"),
            budget: .ratio(1.0 / 16), storage: StorageModel(accounting: .paper), scope: scope, toolVersion: "test")
        let attention = (4096 * 4096 - 112 * 8192) / (2 * 8192)
        let mlp = (11008 * 4096 - 112 * 15104) / (2 * 15104)
        #expect(attention == 968 && mlp == 1436)
        #expect(plan.matrices.count == 224)
        for m in plan.matrices {
            let expected = scope == .global ? nil : (m.type == .attention ? attention : mlp)
            if let expected { #expect(m.allocation.counts == [8: 2, 3: 32, 2: expected], "\(m.name)") }
        }
        #expect(plan.totals.storageBits <= plan.budget.bits)
        #expect(plan.budget.bits == 6_476_005_376)  // (4·4096² + 3·11008·4096)·32 parameters × 1 bit
    }

    /// Artifact accounting charges metadata: the fill must be smaller than under paper accounting
    /// and stay within each unit's budget.
    @Test func artifactAccountingFillsLessAndFits() throws {
        let library = try ProfileLibrary.builtIn()
        let profile = try library.model(named: "llama-2-7b"), preset = try library.preset(named: "delta-come")
        let artifact = try planFromShapes(profile: profile, preset: preset, budget: .ratio(1.0 / 16),
                                          storage: StorageModel(), scope: .matrix, toolVersion: "t")
        let paper = try planFromShapes(profile: profile, preset: preset, budget: .ratio(1.0 / 16),
                                       storage: StorageModel(accounting: .paper), scope: .matrix, toolVersion: "t")
        for (a, p) in zip(artifact.matrices, paper.matrices) {
            #expect(a.allocation.count(bits: 2) < p.allocation.count(bits: 2))
            #expect(a.storageBits <= a.shape[0] * a.shape[1])  // each matrix within its α = 1/16 share
            // One more vector at 2 bits would exceed the share.
            var more = a.allocation
            more.setCount(more.count(bits: 2) + 1, bits: 2)
            #expect(StorageModel().bits(of: more, rows: a.shape[0], columns: a.shape[1]) > a.shape[0] * a.shape[1])
        }
    }

    @Test func shapeOnlyPlanningRejectsPresetOutsideMenuAndInfeasibleBudgets() throws {
        let library = try ProfileLibrary.builtIn()
        let profile = try library.model(named: "llama-2-7b"), preset = try library.preset(named: "delta-come")
        #expect(throws: PlanRequestError.presetOutsideMenu(preset: "delta-come", bits: 8, menu: [4, 3, 2])) {
            try planFromShapes(profile: profile, preset: preset, budget: .ratio(1.0 / 16), storage: StorageModel(),
                               scope: .type, menu: [4, 3, 2], toolVersion: "t")
        }
        do {
            _ = try planFromShapes(profile: profile, preset: preset, budget: .bytes(1000), storage: StorageModel(),
                                   scope: .type, toolVersion: "t")
            Issue.record("a 1000-byte budget was accepted")
        } catch {
            guard case .infeasible(.infeasibleBudget) = error else { Issue.record("\(error)"); return }
        }
    }
}
