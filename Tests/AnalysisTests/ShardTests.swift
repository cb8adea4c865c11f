import Analysis
import Foundation
import LinearAlgebra
import Testing

/// `analyze --shard I/N` and `--finalize`: shards, run in any order or at once, end with the store
/// a single process writes; what is missing, unfinished, damaged or inconsistent is named.
@Suite struct ShardTests {
    /// One OpenBLAS thread, as the CLI runs: stores compared byte for byte must not depend on
    /// another suite changing the thread count between their runs.
    init() { BLASThreads.count = 1 }

    /// Every regular file under `directory` (hidden ones included), by relative path, with its bytes.
    static func files(_ directory: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let base = directory.standardizedFileURL.path
        let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey])
        while let url = enumerator?.nextObject() as? URL {
            guard (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true else { continue }
            out[String(url.standardizedFileURL.path.dropFirst(base.count))] = try Data(contentsOf: url)
        }
        return out
    }

    static func shardsError(_ error: any Error, mentioning parts: [String]) -> Bool {
        guard case let .shards(_, reason) = error as? AnalysisError else { return false }
        return parts.allSatisfy { reason.contains($0) }
    }

    @Test func assignmentCoversEveryItemOnceAndBalancesCost() throws {
        // Costs of a Llama-like layer stack (4 square, 3 wide matrices per layer) and odd ones.
        let layer: [Double] = [1, 1, 1, 1, 2.7, 2.7, 2.7]
        let costs = Array((0..<5).map { _ in layer }.joined()) + [0.3, 5, 0]
        for count in 1...8 {
            let shard = Shard.assignment(costs: costs, count: count)
            #expect(shard.count == costs.count)
            #expect(shard.allSatisfy { (1...count).contains($0) })
            #expect(Shard.assignment(costs: costs, count: count) == shard)
            var load = [Double](repeating: 0, count: count)
            for (item, s) in shard.enumerated() { load[s - 1] += costs[item] }
            // Greedy largest-first: no shard exceeds the mean by more than the largest item.
            let mean = costs.reduce(0, +) / Double(count)
            #expect(load.max()! <= mean + costs.max()! + 1e-12, "\(count) shards: \(load)")
            // The largest items go to distinct shards first: none is left without work.
            if count <= costs.filter({ $0 > 0 }).count { #expect(load.min()! > 0, "\(count) shards: \(load)") }
        }
        // Equal costs go round-robin in index order.
        #expect(Shard.assignment(costs: [1, 1, 1, 1, 1], count: 2) == [1, 2, 1, 2, 1])
        #expect(Shard.assignment(costs: [], count: 3) == [])
    }

    @Test func parsing() throws {
        #expect(try Shard(parsing: "2/4") == Shard(index: 2, count: 4))
        #expect(try Shard(parsing: "1/1").manifestPath == "shards/1-of-1.json")
        for bad in ["0/4", "5/4", "2", "2/", "/4", "a/b", "2/4/6", "-1/4", "1/0"] {
            #expect(throws: AnalysisError.self, "\(bad)") { try Shard(parsing: bad) }
        }
    }

    /// Three shards, two of them at once, then `finalize`: the single run's bytes. Before the
    /// finalize the store is refused, saying how to finish it.
    @Test func shardsThenFinalizeGiveTheSingleRunsStore() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url, layers: 2)
        func analyzer(_ store: String, options: AnalysisOptions = AnalysisOptions()) -> Analyzer {
            Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration, options: options, store: dir(store))
        }
        try analyzer("whole").run()

        var listed: [[String]] = Array(repeating: [], count: 3)
        try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
            for i in [1, 2] {
                group.addTask {
                    var names: [String] = []
                    try analyzer("sharded").run(shard: try Shard(index: i, count: 3), progress: { event in
                        if case let .started(matrices) = event { names = matrices.map(\.name) }
                    })
                    return (i, names)
                }
            }
            for try await (i, names) in group { listed[i - 1] = names }
        }
        #expect(throws: AnalysisError.self) { try SpectrumStore(at: dir("sharded"), requireComplete: false) }
        #expect { try Analyzer.finalize(store: dir("sharded")) } throws: { Self.shardsError($0, mentioning: ["shard 3/3", "--shard 3/3"]) }
        try analyzer("sharded").run(shard: try Shard(index: 3, count: 3), progress: { event in
            if case let .started(matrices) = event { listed[2] = matrices.map(\.name) }
        })
        // Each shard listed its own matrices: together every matrix, once.
        let whole = try SpectrumStore(at: dir("whole"))
        #expect(listed.joined().sorted() == whole.matrices.map(\.name).sorted())
        #expect(listed.allSatisfy { !$0.isEmpty })

        let finalized = try Analyzer.finalize(store: dir("sharded"))
        #expect(finalized.identity == whole.identity)
        #expect(try Self.files(dir("sharded")) == Self.files(dir("whole")))
        // Finalizing again, or running a shard of a complete store, changes nothing.
        try Analyzer.finalize(store: dir("sharded"))
        try analyzer("sharded").run(shard: try Shard(index: 2, count: 3))
        #expect(try Self.files(dir("sharded")) == Self.files(dir("whole")))
    }

    /// A damaged matrix file is named with its shard; rerunning only that shard redoes it. An
    /// unfinished shard and one made with other options are named too.
    @Test func finalizeNamesWhatToRerun() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url)
        func analyzer(_ options: AnalysisOptions = AnalysisOptions()) -> Analyzer {
            Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration, options: options, store: dir("store"))
        }
        try analyzer().run(store: "whole", paths: paths, dir: dir)
        #expect { try Analyzer.finalize(store: dir("store")) } throws: { Self.shardsError($0, mentioning: ["no shard has finished", "--shard I/N"]) }

        // Shard 1/2 stopped after one matrix: unfinished.
        var finished = 0
        #expect(throws: CancellationError.self) {
            try analyzer().run(shard: try Shard(index: 1, count: 2), progress: { if case .matrixFinished = $0 { finished += 1 } },
                               shouldStop: { finished >= 1 })
        }
        try analyzer().run(shard: try Shard(index: 2, count: 2))
        #expect { try Analyzer.finalize(store: dir("store")) } throws: { Self.shardsError($0, mentioning: ["shard 1/2 has not finished"]) }
        var resumedFrom = -1
        try analyzer().run(shard: try Shard(index: 1, count: 2), progress: { event in
            if case let .started(matrices) = event { resumedFrom = matrices.filter(\.alreadyDone).count }
        })
        #expect(resumedFrom == 1)

        // Damage a matrix of shard 2/2: named; rerunning shard 2/2 alone repairs it.
        let manifest = try JSONDecoder().decode(StoreManifest.self, from: Data(contentsOf: dir("store/shards/2-of-2.json")))
        let victim = try #require(manifest.matrices.first { $0.status == .done })
        let file = dir("store").appendingPathComponent(victim.file!)
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 5] ^= 0x40
        try bytes.write(to: file)
        #expect { try Analyzer.finalize(store: dir("store")) } throws: {
            Self.shardsError($0, mentioning: ["matrix \(victim.name) of shard 2/2 is damaged", "--shard 2/2"])
        }
        var redone: [String] = []
        try analyzer().run(shard: try Shard(index: 2, count: 2), progress: { event in
            if case let .matrixStarted(_, _, name, _, _) = event { redone.append(name) }
        })
        #expect(redone == [victim.name])
        try Analyzer.finalize(store: dir("store"))
        #expect(try Self.files(dir("store")) == Self.files(dir("whole")))

        // Shards made with other options than each other.
        try FileManager.default.removeItem(at: dir("store"))
        try analyzer().run(shard: try Shard(index: 1, count: 2))
        try analyzer(AnalysisOptions(maxRank: 8)).run(shard: try Shard(index: 2, count: 2))
        #expect { try Analyzer.finalize(store: dir("store")) } throws: {
            Self.shardsError($0, mentioning: ["shard 2/2 was made from other inputs or options", "options differ"])
        }
        // A shard manifest of another count beside them (checked first).
        try Data("{}".utf8).write(to: dir("store/shards/1-of-3.json"))
        #expect { try Analyzer.finalize(store: dir("store")) } throws: { Self.shardsError($0, mentioning: ["different counts"]) }
    }
}

private extension Analyzer {
    /// The same analysis into `store` (a reference run).
    func run(store name: String, paths: SyntheticPair.Paths, dir: TemporaryDirectory) throws {
        try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration, options: options, store: dir(name)).run()
    }
}
