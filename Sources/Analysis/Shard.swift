import Checkpoint
import ContentHash
import Foundation

/// One of N parts of an analysis (`deltaplan analyze --shard I/N`), for running the matrices of one
/// store in several processes, possibly on several machines sharing the store's filesystem.
///
/// Every shard assigns the matrices the same way (``assignment(costs:count:)``, from their shapes
/// alone), writes the files of its own matrices into the store's `matrices/` (each file
/// atomically; the names are by matrix index, so shards never write the same file) and records them
/// in a manifest of its own, `shards/I-of-N.json`: no two processes ever write one file, so nothing
/// needs a lock, which network filesystems do not all honour. ``Analyzer/finalize(store:)`` then
/// checks every shard's manifest and matrix files and writes the store's `manifest.json`, the same
/// bytes a single process writes.
public struct Shard: Sendable, Hashable, CustomStringConvertible {
    /// 1…count.
    public let index: Int
    public let count: Int

    public static let folder = "shards"

    public init(index: Int, count: Int) throws(AnalysisError) {
        guard count >= 1, (1...count).contains(index) else {
            throw .invalidOption("--shard", "I/N needs 1 ≤ I ≤ N, got \(index)/\(count)")
        }
        self.index = index
        self.count = count
    }

    /// `I/N`, e.g. `2/4`.
    public init(parsing text: String) throws(AnalysisError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]) else {
            throw .invalidOption("--shard", "expected I/N (e.g. 2/4), got '\(text)'")
        }
        try self.init(index: i, count: n)
    }

    public var description: String { "\(index)/\(count)" }

    /// The shard's manifest, relative to the store.
    public var manifestPath: String { "\(Self.folder)/\(index)-of-\(count).json" }

    /// The shard (1…count) of each item: the most expensive first (ties in index order), each to
    /// the shard with the least estimated cost so far (ties to the lowest index): every shard's
    /// total is within the largest single cost of the mean. Depends on `costs` alone.
    public static func assignment(costs: [Double], count: Int) -> [Int] {
        precondition(count >= 1)
        var load = [Double](repeating: 0, count: count)
        var shard = [Int](repeating: 0, count: costs.count)
        for item in costs.indices.sorted(by: { costs[$0] != costs[$1] ? costs[$0] > costs[$1] : $0 < $1 }) {
            let least = load.indices.min { load[$0] != load[$1] ? load[$0] < load[$1] : $0 < $1 }!
            shard[item] = least + 1
            load[least] += costs[item]
        }
        return shard
    }

    /// What keeps a set of shards from being finalized: none has finished, two counts are mixed,
    /// or one has not finished (named, with how to run it).
    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// The shards of `names` (files of a folder, recognized by `parse`), when they are all N of
    /// one count N. `command` is the subcommand that runs a shard, for the messages.
    public static func all(among names: [String], parse: (String) -> Shard?, command: String) throws(Problem) -> [Shard] {
        let shards = names.compactMap(parse).sorted { ($0.count, $0.index) < ($1.count, $1.index) }
        guard let count = shards.first?.count else {
            throw Problem(description: "no shard has finished: run \(command) with --shard I/N first")
        }
        if let other = shards.first(where: { $0.count != count }) {
            throw Problem(description: "shards of different counts: \(shards[0]) and \(other); remove the records of the count not used")
        }
        if let missing = (1...count).first(where: { i in !shards.contains { $0.index == i } }) {
            throw Problem(description: "shard \(missing)/\(count) has not finished: run \(command) with --shard \(missing)/\(count)")
        }
        return shards
    }

    /// The name of a shard's record in a compression's work directory: `shard-I-of-N.json`.
    public static func recordName(_ shard: Shard) -> String { "shard-\(shard.index)-of-\(shard.count).json" }

    /// The shard of a record name `shard-I-of-N.json`, or nil for any other name.
    public static func parsingRecordName(_ name: String) -> Shard? {
        name.hasPrefix("shard-") ? parsingManifestName(String(name.dropFirst("shard-".count))) : nil
    }

    /// The shard a manifest file name `I-of-N.json` belongs to, or nil for any other name.
    static func parsingManifestName(_ name: String) -> Shard? {
        guard name.hasSuffix(".json") else { return nil }
        let parts = name.dropLast(".json".count).components(separatedBy: "-of-")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]),
              String(i) == parts[0], String(n) == parts[1] else { return nil }
        return try? Shard(index: i, count: n)
    }
}

extension Analyzer {
    /// Finishes a store analyzed in shards: checks that every shard of the one count N left its
    /// manifest, complete and made from the same inputs and options as the others, and that every
    /// matrix file is the one its shard recorded (size and SHA-256), then writes `manifest.json`
    /// (the bytes a single process writes) and removes `shards/`. A store that is already complete
    /// is returned as it is.
    ///
    /// - Throws: ``AnalysisError/shards(store:reason:)`` naming the shard to rerun (missing,
    ///   unfinished, damaged) or the one made from other inputs.
    @discardableResult
    public static func finalize(store: URL) throws(AnalysisError) -> SpectrumStore {
        let folder = store.appendingPathComponent(Shard.folder)
        if let done = try? SpectrumStore(at: store), done.manifest.complete {
            try? FileManager.default.removeItem(at: folder)
            return done
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        let shards: [Shard]
        do throws(Shard.Problem) { shards = try Shard.all(among: names, parse: Shard.parsingManifestName, command: "analyze") } catch {
            throw .shards(store: store.path, reason: "\(error) (\(folder.path))")
        }
        let count = shards[0].count
        var manifests: [StoreManifest] = []
        for shard in shards {
            let reader = try SpectrumStore(at: store, manifest: store.appendingPathComponent(shard.manifestPath), requireComplete: false)
            guard reader.manifest.complete else {
                throw .shards(store: store.path, reason: "shard \(shard) has not finished: rerun analyze with --shard \(shard)")
            }
            if let first = manifests.first, let reason = try difference(old: first, new: reader.manifest) ?? sameRecords(first, reader.manifest) {
                throw .shards(store: store.path, reason: "shard \(shard) was made from other inputs or options than shard 1/\(count): "
                              + "\(reason); rerun it with the same ones")
            }
            manifests.append(reader.manifest)
        }
        var merged = manifests[0]
        let assignment = Shard.assignment(costs: merged.matrices.map { estimatedCost(rows: $0.rows, columns: $0.columns) }, count: count)
        let reader = try SpectrumStore(at: store, manifest: store.appendingPathComponent(shards[0].manifestPath), requireComplete: false)
        for (i, shardIndex) in assignment.enumerated() {
            let record = manifests[shardIndex - 1].matrices[i]
            let shard = shards[shardIndex - 1]
            guard record.status == .done else {
                throw .shards(store: store.path, reason: "matrix \(record.name) of shard \(shard) was not analyzed: rerun analyze with --shard \(shard)")
            }
            do throws(AnalysisError) { try reader.verify(record) } catch {
                throw .shards(store: store.path, reason: "matrix \(record.name) of shard \(shard) is damaged (\(error)): "
                              + "rerun analyze with --shard \(shard), which redoes it")
            }
            merged.matrices[i] = record
        }
        merged.complete = true
        try write(merged, to: store.appendingPathComponent(SpectrumStore.manifestName))
        try? FileManager.default.removeItem(at: folder)
        return try SpectrumStore(at: store)
    }

    /// Why two shards' manifests list different matrices (names, shapes, calibration), or nil.
    private static func sameRecords(_ a: StoreManifest, _ b: StoreManifest) -> String? {
        guard a.skipped == b.skipped, a.dataFree == b.dataFree, a.calibrationFile == b.calibrationFile,
              a.formatVersion == b.formatVersion, a.toolVersion == b.toolVersion else {
            return "its manifest's header differs"
        }
        for (x, y) in zip(a.matrices, b.matrices)
        where (x.rows, x.columns, x.calibration, x.calibrationEntry, x.statistics) != (y.rows, y.columns, y.calibration, y.calibrationEntry, y.statistics) {
            return "matrix \(x.name) differs"
        }
        return nil
    }
}

/// The records that shards of the measurement pass and of compress keep beside the files they
/// write: `shard-I-of-N.json`, the SHA-256 of each of the shard's files by name. A finalize checks
/// every file against them; a shard's rerun redoes the files damaged since its record.
public enum ShardRecords {
    /// Records `shard`'s `files` (names in `folder`) with their SHA-256, atomically.
    public static func write(_ shard: Shard, files: [String], in folder: URL) throws {
        var record: [String: String] = [:]
        for name in files { record[name] = try Digest.sha256(fileAt: folder.appendingPathComponent(name)) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try AtomicFile.write(data: try encoder.encode(record), to: folder.appendingPathComponent(Shard.recordName(shard)))
    }

    /// Before `shard`'s rerun: removes its record and those of its `files` that no longer have the
    /// SHA-256 it recorded, so that they are made again.
    public static func discardDamaged(_ shard: Shard, files: [String], in folder: URL) {
        let recordURL = folder.appendingPathComponent(Shard.recordName(shard))
        guard let data = try? Data(contentsOf: recordURL), let record = try? JSONDecoder().decode([String: String].self, from: data) else { return }
        for name in files where (try? Digest.sha256(fileAt: folder.appendingPathComponent(name))) != record[name] {
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
        try? FileManager.default.removeItem(at: recordURL)
    }

    /// The records of every shard of one count N in `folder`, merged, with N and the shards; the
    /// problem names the shard to run with `command` when one is missing or unreadable.
    public static func all(in folder: URL, command: String) throws(Shard.Problem) -> (shards: [Shard], files: [String: String]) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        let shards: [Shard]
        do throws(Shard.Problem) { shards = try Shard.all(among: names, parse: Shard.parsingRecordName, command: command) } catch {
            throw Shard.Problem(description: "\(error) (\(folder.path))")
        }
        var files: [String: String] = [:]
        for shard in shards {
            let url = folder.appendingPathComponent(Shard.recordName(shard))
            guard let data = try? Data(contentsOf: url), let record = try? JSONDecoder().decode([String: String].self, from: data) else {
                throw Shard.Problem(description: "the record of shard \(shard) (\(url.path)) is unreadable: run \(command) with --shard \(shard)")
            }
            files.merge(record) { first, _ in first }
        }
        return (shards, files)
    }
}
