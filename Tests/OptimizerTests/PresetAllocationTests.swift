import Testing
import ModelProfiles
@testable import Optimizer

@Suite struct PresetAllocationTests {
    /// The paper's budget equation for 4096 × 4096 at α = 1/16 leaves exactly 968 vectors at 2 bits
    /// after 2 at 8 and 32 at 3: (4096² − (8·2 + 3·32)·8192) / (2·8192) = 968.
    @Test func deltaComePresetGivesThePapers968Columns() throws {
        let preset = try ProfileLibrary.builtIn().preset(named: "delta-come")
        let shape = MatrixShape(name: "q", type: .attention, rows: 4096, columns: 4096)
        let storage = StorageModel(accounting: .paper)
        let budget = StorageModel.denseBits(rows: 4096, columns: 4096) / 16
        let a = try preset.allocations(for: [shape], budgetBits: budget, storage: storage, unit: "q")[0]
        #expect(a.counts == [8: 2, 3: 32, 2: 968])
        #expect(a.segments == [Segment(start: 0, end: 2, bits: 8), Segment(start: 2, end: 34, bits: 3),
                               Segment(start: 34, end: 1002, bits: 2)])
        #expect(storage.bits(of: a, rows: 4096, columns: 4096) == budget)
    }

    @Test func fixedSegmentsOverTheBudgetStateTheSmallestFeasible() throws {
        let preset = try ProfileLibrary.builtIn().preset(named: "delta-come")
        let shape = MatrixShape(name: "q", type: .attention, rows: 256, columns: 256)
        let storage = StorageModel(accounting: .paper)
        // Fixed part: (8·2 + 3·32)·512 = 57344 bits.
        #expect(throws: PlanningError.infeasibleBudget(unit: "q", budgetBits: 1000, smallestFeasibleBits: 57344)) {
            try preset.allocations(for: [shape], budgetBits: 1000, storage: storage, unit: "q")
        }
    }

    @Test func fillNeverExceedsTheRank() throws {
        let preset = try ProfileLibrary.builtIn().preset(named: "single-2")
        let shape = MatrixShape(name: "k", type: .attention, rows: 64, columns: 32)
        let a = try preset.allocations(for: [shape], budgetBits: .max / 4, storage: StorageModel(), unit: "k")[0]
        #expect(a.counts == [2: 32])
    }
}
