import Testing
import ModelProfiles
@testable import Optimizer

@Suite struct FootprintTests {
    /// Llama-2-7B by hand: per layer 4·4096² + 3·11008·4096 = 202 375 168 planned parameters plus two
    /// 4096 norms; 32 layers → 6 476 005 376 planned + 262 144 norms; embeddings and lm_head 2·32000·4096
    /// = 262 144 000; final norm 4096. Total 6 738 415 616 parameters, M = 13 476 831 232 bytes in BF16.
    /// 80 GiB = 85 899 345 920 B: ⌊G/M⌋ = 6 (the paper: fewer than 8). α·M = 842 301 952 B;
    /// ⌊(G − M)/(α·M)⌋ = ⌊72 422 514 688 / 842 301 952⌋ = 85.
    @Test func llama27BHandComputation() throws {
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b")
        let artifactBits = 8 * 800_000_000  // an 800 MB planned artifact, for the arithmetic
        let f = footprint(profile: profile, alpha: 1.0 / 16, artifactPlannedBits: artifactBits, models: [2, 50],
                          gpuMemoryBytes: 80 << 30)
        #expect(f.plannedParameters == 6_476_005_376)
        #expect(f.modelParameters == 6_738_415_616)
        #expect(f.modelBytes == 13_476_831_232)
        #expect(f.paperDeltaBytes == 842_301_952)
        #expect(f.carriedBytes == 2 * (6_738_415_616 - 6_476_005_376))
        #expect(f.artifactDeltaBytes == 800_000_000 + 524_820_480)
        #expect(f.fitUncompressed == 6)
        #expect(f.fitPaper == 85)
        // ⌊72 422 514 688 / 1 324 820 480⌋ = 54.
        #expect(f.fitArtifact == 54)
        #expect(f.rows[0] == .init(models: 2, uncompressedBytes: 26_953_662_464, paperBytes: 13_476_831_232 + 2 * 842_301_952,
                                   artifactBytes: 13_476_831_232 + 2 * 1_324_820_480))
        #expect(f.rows[1].uncompressedBytes == 50 * 13_476_831_232)
        let shared = footprint(profile: profile, alpha: 1.0 / 16, artifactPlannedBits: artifactBits, models: [1],
                               gpuMemoryBytes: 10 << 30, carryUnplanned: false)
        #expect(shared.carriedBytes == 0)
        #expect(shared.fitUncompressed == 0 && shared.fitArtifact == 0)  // 10 GiB < M
    }
}
