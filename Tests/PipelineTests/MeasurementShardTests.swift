import Analysis
import Foundation
import LinearAlgebra
import Pipeline
import Quantization
import Testing

/// `measure --shard I/N` and `--finalize`: the shards' tables are the whole pass's, byte for byte;
/// what is missing or damaged is named with the shard to rerun, and rerunning it repairs it.
@Suite(.serialized) struct MeasurementShardTests {
    init() { BLASThreads.count = 1 }

    static func shardsError(_ error: any Error, mentioning parts: [String]) -> Bool {
        guard case let .shards(_, reason) = error as? QuantizationError else { return false }
        return parts.allSatisfy { reason.contains($0) }
    }

    @Test func shardsThenFinalizeGiveTheWholePassesTables() throws {
        let (store, calibration, dir) = try MeasurementTests.makeStore("shards")
        defer { try? FileManager.default.removeItem(at: dir) }
        let errors = store.url.appendingPathComponent("errors")
        let options = MeasurementOptions(bits: [8, 3, 2], chunkSize: 8)
        let whole = try measuredSpectra(store: store, calibration: calibration, options: options)
        let tables = try ThreadsAndResumeTests.files(errors)
        try FileManager.default.removeItem(at: errors)

        func shard(_ i: Int) throws -> [String] {
            var names: [String] = []
            try measureShard(store: store, calibration: calibration, options: options, shard: try Shard(index: i, count: 3),
                             progress: { _, _, name in names.append(name) })
            return names
        }
        func finalize() throws { try finalizeMeasurement(store: store, calibration: calibration, options: options) }
        #expect { try finalize() } throws: { Self.shardsError($0, mentioning: ["no shard has finished"]) }
        var measured = [try shard(3), try shard(1)]
        #expect { try finalize() } throws: { Self.shardsError($0, mentioning: ["shard 2/3 has not finished", "--shard 2/3"]) }
        measured.append(try shard(2))
        #expect(measured.joined().sorted() == store.matrices.map(\.name).sorted())
        #expect(measured.allSatisfy { !$0.isEmpty })

        // A table damaged after its shard recorded it: named; its shard's rerun measures it again.
        let victim = measured[2][0]
        let record = try #require(store.matrices.first { $0.name == victim })
        let file = errors.appendingPathComponent("feedback").appendingPathComponent((record.file! as NSString).lastPathComponent)
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 2] ^= 0x01
        try bytes.write(to: file)
        #expect { try finalize() } throws: { Self.shardsError($0, mentioning: ["the table of \(victim) (shard 2/3)", "--shard 2/3"]) }
        #expect(try shard(2) == measured[2])
        #expect(try finalizeMeasurement(store: store, calibration: calibration, options: options) == store.matrices.count)

        // The shards' records are gone; the cache is the whole pass's, and reads as complete.
        #expect(try ThreadsAndResumeTests.files(errors) == tables)
        #expect(try measuredSpectra(store: store, calibration: calibration, options: options) == whole)
        #expect(try ThreadsAndResumeTests.files(errors) == tables)
    }
}
