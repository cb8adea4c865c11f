import Analysis
import ArtifactFormat
import Foundation
import LinearAlgebra
import Pipeline
import Testing

/// `compress --shard I/N` and `--finalize`: shards, one of them run while another runs, write the
/// matrices of the whole compression into the shared work directory; the finalize quantizes
/// nothing and writes the whole compression's artifact, byte for byte. What is missing or damaged
/// is named with the shard to rerun, and rerunning that shard alone repairs it.
@Suite(.serialized) struct CompressionShardTests {
    init() { BLASThreads.count = 1 }

    static func shardsError(_ error: any Error, mentioning parts: [String]) -> Bool {
        guard case let .shards(_, reason) = error as? ArtifactError else { return false }
        return parts.allSatisfy { reason.contains($0) }
    }

    @Test func shardsThenFinalizeGiveTheWholeCompressionsArtifact() async throws {
        let f = try ArtifactFixture.get()
        let out = f.url("sharded-\(UUID().uuidString)")
        let work = compressionWorkDirectory(for: out)
        defer { for url in [out, work] { try? FileManager.default.removeItem(at: url) } }
        let options = CompressionOptions(toolVersion: "test")
        func shard(_ i: Int) throws -> [Int] {
            var quantized: [Int] = []
            try compress(store: f.store, plan: f.exactPlan, calibration: f.calibration, options: options, to: out,
                         shard: try Shard(index: i, count: 3),
                         progress: { if case let .matrixFinished(index, _, _, _) = $0 { quantized.append(index) } })
            return quantized
        }
        func finalize() throws -> ArtifactManifest {
            try finalizeCompression(store: f.store, plan: f.exactPlan, calibration: f.calibration, options: options, to: out)
        }
        // Shards 1 and 3 at once.
        var quantized: [[Int]] = [[], [], []]
        try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
            for i in [1, 3] { group.addTask { (i, try shard(i)) } }
            for try await (i, indices) in group { quantized[i - 1] = indices }
        }
        #expect { try finalize() } throws: { Self.shardsError($0, mentioning: ["shard 2/3 has not finished", "--shard 2/3"]) }
        #expect(!FileManager.default.fileExists(atPath: out.path))
        quantized[1] = try shard(2)
        #expect(quantized.joined().sorted() == Array(f.exactPlan.matrices.indices))
        #expect(quantized.allSatisfy { !$0.isEmpty })

        // A damaged matrix file: named with its shard; rerunning that shard alone redoes it.
        let victim = quantized[1][0]
        let file = work.appendingPathComponent(String(format: "%05d.safetensors", victim))
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 3] ^= 0x10
        try bytes.write(to: file)
        #expect { try finalize() } throws: {
            Self.shardsError($0, mentioning: ["matrix \(f.exactPlan.matrices[victim].name) of shard 2/3 is missing or damaged", "--shard 2/3"])
        }
        #expect(try shard(2) == [victim])

        var events = 0
        let manifest = try finalizeCompression(store: f.store, plan: f.exactPlan, calibration: f.calibration, options: options, to: out,
                                               progress: { if case .matrixStarted = $0 { events += 1 } })
        #expect(events == 0)
        #expect(manifest.matrices.count == f.exactPlan.matrices.count)
        #expect(try ThreadsAndResumeTests.files(out) == ThreadsAndResumeTests.files(f.exactArtifact))
        #expect(!FileManager.default.fileExists(atPath: work.path))
    }

    @Test func finalizeWithoutShards() throws {
        let f = try ArtifactFixture.get()
        let out = f.url("unsharded-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: compressionWorkDirectory(for: out)) }
        #expect {
            try finalizeCompression(store: f.store, plan: f.exactPlan, calibration: f.calibration, options: CompressionOptions(toolVersion: "test"),
                                    to: out)
        } throws: { Self.shardsError($0, mentioning: ["no shard has finished", "--shard I/N"]) }
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }
}
