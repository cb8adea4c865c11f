import Testing
import ModelProfiles
@testable import Optimizer

@Suite struct PlanExportTests {
    static func llamaPlan(accounting: Accounting, scope: Scope) throws -> Plan {
        let library = try ProfileLibrary.builtIn()
        return try planFromShapes(profile: library.model(named: "llama-2-7b"), preset: library.preset(named: "delta-come"),
                                  budget: .ratio(1.0 / 16), storage: StorageModel(accounting: accounting), scope: scope,
                                  toolVersion: "t")
    }

    /// Flags of thunlp/Delta-CoMe's run.sh for a uniform plan; 1436 = ⌊(11008·4096 − 112·15104)/(2·15104)⌋.
    @Test func uniformPlanExportsTheScriptFlags() throws {
        let flags = try Self.llamaPlan(accounting: .paper, scope: .type).deltaComeFlags()
        #expect(flags == "--attn_fp16_col 0 --mlp_fp16_col 0 --attn_int8_col 2 --mlp_int8_col 2 --attn_int4_col 0 --mlp_int4_col 0 --attn_int3_col 32 --mlp_int3_col 32 --attn_int2_col 968 --mlp_int2_col 1436 --bits 8 3 2")
    }

    /// Under artifact accounting with per-matrix budgets, gate/up (11008×4096) and down (4096×11008)
    /// carry different group metadata, so their 2-bit counts differ.
    @Test func nonUniformPlanIsRefusedWithTheReason() throws {
        let plan = try Self.llamaPlan(accounting: .artifact, scope: .matrix)
        do {
            _ = try plan.deltaComeFlags()
            Issue.record("exported a non-uniform plan")
        } catch {
            guard case let .notUniform(type, _, first, _, other) = error else { Issue.record("\(error)"); return }
            #expect(type == .mlp)
            #expect(first != other)
            #expect(error.description.contains("--scope type"))
        }
    }

    static func handPlan(_ segments: [LayerType: [Segment]]) -> Plan {
        let matrices = segments.keys.sorted().map {
            Plan.Matrix(name: "\($0.rawValue).w", type: $0, shape: [64, 64], segments: segments[$0]!, storageBits: 0)
        }
        return Plan(toolVersion: "t", source: .init(kind: "profile", name: "x", hash: ""), budget: .init(given: "1/16", bits: 0),
                    storage: StorageModel(), scope: .type, strategy: .init(name: "greedy", seed: 0),
                    bits: [16, 8, 4, 3, 2, 1], matrices: matrices)
    }

    @Test func unsupportedAndUnsharedWidthsAreRefused() {
        let oneBit = Self.handPlan([.attention: [Segment(start: 0, end: 4, bits: 2), Segment(start: 4, end: 9, bits: 1)],
                                    .mlp: [Segment(start: 0, end: 4, bits: 2)]])
        #expect(throws: ExportError.unsupportedBits(matrix: "attention.w", bits: 1)) { try oneBit.deltaComeFlags() }
        let unshared = Self.handPlan([.attention: [Segment(start: 0, end: 4, bits: 4), Segment(start: 4, end: 9, bits: 2)],
                                      .mlp: [Segment(start: 0, end: 4, bits: 2)]])
        #expect(throws: ExportError.widthNotShared(bits: 4, usedBy: .attention)) { try unshared.deltaComeFlags() }
        let fp16 = Self.handPlan([.attention: [Segment(start: 0, end: 3, bits: 16), Segment(start: 3, end: 9, bits: 2)],
                                  .mlp: [Segment(start: 0, end: 5, bits: 2)]])
        #expect((try? fp16.deltaComeFlags()) == "--attn_fp16_col 3 --mlp_fp16_col 0 --attn_int8_col 0 --mlp_int8_col 0 --attn_int4_col 0 --mlp_int4_col 0 --attn_int3_col 0 --mlp_int3_col 0 --attn_int2_col 6 --mlp_int2_col 5 --bits 2")
        let onlyFP16 = Self.handPlan([.attention: [Segment(start: 0, end: 3, bits: 16)], .mlp: [Segment(start: 0, end: 3, bits: 16)]])
        #expect(throws: ExportError.nothingQuantized) { try onlyFP16.deltaComeFlags() }
        // A kept (dense) matrix has no segments, which the script would read as zero columns.
        var kept = Self.handPlan([.attention: [], .mlp: [Segment(start: 0, end: 5, bits: 2)]])
        kept.matrices[0].dense = true
        #expect(throws: ExportError.denseMatrix(matrix: "attention.w")) { try kept.deltaComeFlags() }
    }
}
