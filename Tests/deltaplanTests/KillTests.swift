import Analysis
import Foundation
import LinearAlgebra
import ModelProfiles
import Optimizer
import Testing
@testable import deltaplan
#if canImport(Glibc)
import Glibc
#endif

/// What the kill tests start from, made once per test process, in-process, without interruption:
/// a one-layer Llama-2-7B-shaped pair at 1/16 scale (q/k/v/o 256×256, gate/up 688×256, down
/// 256×688: 7 matrices, 2.6 MB per BF16 checkpoint) with calibration, its store, a hand-made plan
/// of the store (no measurement pass: 8 bits for 2 vectors, 3 bits for 14, 2 bits for 32), the
/// artifact of that plan and its merge. A killed and rerun `deltaplan` must end with these bytes.
/// (The killed runs stop themselves after their first matrix, `DELTAPLAN_STOP_AFTER=1`, and are
/// killed while stopped: the moment does not depend on the machine's load.)
struct KillFixture: Sendable {
    let root: URL
    let pair: SyntheticPair.Paths
    let store: URL
    let plan: URL
    let artifact: URL
    let merged: URL

    var analyzeArguments: [String] {
        ["analyze", "--base", pair.base.path, "--finetuned", pair.finetuned.path, "--calibration", pair.calibration.path]
    }
}

actor KillFixtures {
    static let shared = KillFixtures()
    private var made: Task<KillFixture, any Error>?

    func get() async throws -> KillFixture {
        if made == nil { made = Task { try await Self.make() } }
        return try await made!.value
    }

    private static func make() async throws -> KillFixture {
        let root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("deltaplan-kill-\(getpid())")
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "/deltaplan-kill-\(getpid())") }
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 16, layers: 1)
        let pair = try SyntheticPair(profile: profile, seed: 11, tokens: 256, sampleRows: 0).write(to: root.appendingPathComponent("pair"))
        let storeURL = root.appendingPathComponent("store")
        // One OpenBLAS thread, as the CLI and the service run every stage (`--threads`): the store's
        // bytes depend on how OpenBLAS splits its sums.
        BLASThreads.count = 1
        let store = try Analyzer(base: pair.base, finetuned: pair.finetuned, calibration: pair.calibration,
                                 options: AnalysisOptions(), store: storeURL).run()
        let plan = root.appendingPathComponent("plan.json")
        try handPlan(store).write(to: plan)
        let artifact = root.appendingPathComponent("artifact"), merged = root.appendingPathComponent("merged")
        try await run(["compress", storeURL.path, "--plan", plan.path, "--out", artifact.path])
        try await run(["merge", "--base", pair.base.path, "--artifact", artifact.path, "--out", merged.path])
        return KillFixture(root: root, pair: pair, store: storeURL, plan: plan, artifact: artifact, merged: merged)
    }

    /// A store plan without the measurement pass (which takes minutes in a debug build).
    private static func handPlan(_ store: SpectrumStore) throws -> Plan {
        let storage = StorageModel()
        let matrices = store.matrices.map { record in
            let rank = record.storedRank ?? 0
            let segments = [Segment(start: 0, end: 2, bits: 8), Segment(start: 2, end: 16, bits: 3),
                            Segment(start: 16, end: min(48, rank), bits: 2)]
            return Plan.Matrix(name: record.name, type: record.type, shape: [record.rows, record.columns], segments: segments,
                               storageBits: storage.bits(of: Allocation(segments: segments), rows: record.rows, columns: record.columns))
        }
        return Plan(toolVersion: DeltaPlanVersion.string, source: .init(kind: "store", name: store.url.path, hash: store.identity),
                    budget: .init(given: "by hand", bits: matrices.reduce(0) { $0 + $1.storageBits }), storage: storage,
                    scope: .matrix, strategy: .init(name: "preset", preset: "kill-test", seed: 0), bits: [8, 3, 2],
                    matrices: matrices, segmentOrder: .default)
    }
}

/// `kill -9` of the CLI in the middle of `analyze`, `compress` and `merge`: nothing half-written is
/// visible as complete, later stages refuse what is left with a message saying why, and a rerun
/// ends with the bytes of an uninterrupted run. Serialized: each kill waits for a moment in the
/// run, and the runs share the fixture.
@Suite("kill -9 mid-run", .serialized)
struct KillTests {
    @Test("analyze killed after its first matrix: plan refuses the store as incomplete, a rerun resumes it to the uninterrupted store")
    func analyzeKilled() async throws {
        let fixture = try await KillFixtures.shared.get()
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let store = dir.url.appendingPathComponent("store")
        let arguments = fixture.analyzeArguments + ["--out", store.path]
        let child = try DeltaplanProcess(arguments, logs: dir.url, environment: ["DELTAPLAN_STOP_AFTER": "1"])
        try child.kill9AtStop()
        #expect(child.wasKilled)

        // What is left: an incomplete manifest, and every matrix it records as done whole.
        let left = try SpectrumStore(at: store, requireComplete: false)
        #expect(!left.manifest.complete)
        #expect((1..<7).contains(left.matrices.count), "\(left.matrices.count) matrices done")
        for record in left.matrices { try left.verify(record) }
        #expect(throws: AnalysisError.self) { try SpectrumStore(at: store) }

        // A later stage refuses it, saying how to finish it.
        let plan = try DeltaplanProcess.run(["plan", store.path, "--budget", "1/16", "--out", dir("plan.json")], logs: dir.url)
        #expect(plan.status != 0)
        #expect(plan.errors.contains("is incomplete") && plan.errors.contains("rerun analyze"), "\(plan.errors)")
        #expect(!FileManager.default.fileExists(atPath: dir("plan.json")))

        // The rerun resumes and ends with the uninterrupted store, byte for byte (no stray temporaries).
        let rerun = try DeltaplanProcess.run(arguments, logs: dir.url)
        #expect(rerun.status == 0, "\(rerun.errors)")
        #expect(rerun.errors.contains("resuming: \(left.matrices.count) of 7 matrices already done"), "\(rerun.errors)")
        #expect(try differingFiles(store, fixture.store) == [])
    }

    @Test("compress killed after its first matrix: no artifact, merge refuses the path and the work left; a rerun resumes from the saved matrices to the uninterrupted artifact")
    func compressKilled() async throws {
        let fixture = try await KillFixtures.shared.get()
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let artifact = dir.url.appendingPathComponent("artifact")
        let arguments = ["compress", fixture.store.path, "--plan", fixture.plan.path, "--out", artifact.path]
        let child = try DeltaplanProcess(arguments, logs: dir.url, environment: ["DELTAPLAN_STOP_AFTER": "1"])
        try child.kill9AtStop()
        #expect(child.wasKilled)

        // Nothing at the destination; only the hidden work directory with the matrices quantized
        // so far (each file whole: written atomically), and no manifest.
        #expect(!FileManager.default.fileExists(atPath: artifact.path))
        let work = dir.url.appendingPathComponent(".artifact.partial")
        let leftovers = listing(dir.url, hidden: true).filter { $0.hasPrefix(".artifact.") }
        #expect(leftovers == [work.lastPathComponent], "\(leftovers)")
        let saved = listing(work).filter { $0.hasSuffix(".safetensors") }
        #expect((1..<7).contains(saved.count), "\(saved.count) matrices saved")
        #expect(!FileManager.default.fileExists(atPath: work.appendingPathComponent("manifest.json").path))
        for path in [artifact.path, work.path] {
            let merge = try DeltaplanProcess.run(["merge", "--base", fixture.pair.base.path, "--artifact", path, "--out", dir("merged")],
                                                 logs: dir.url)
            #expect(merge.status != 0)
            #expect(merge.errors.contains("not an artifact (no readable manifest.json)"), "\(merge.errors)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir("merged")))

        // The rerun quantizes only the other matrices and ends with the uninterrupted bytes.
        let rerun = try DeltaplanProcess.run(arguments, logs: dir.url)
        #expect(rerun.status == 0, "\(rerun.errors)")
        #expect(rerun.errors.contains("resuming: \(saved.count) of 7 matrices already quantized"), "\(rerun.errors)")
        #expect(try differingFiles(artifact, fixture.artifact) == [])
        #expect(!FileManager.default.fileExists(atPath: work.path))
    }

    @Test("plan's measurement pass killed after its first matrix: no plan, the finished error tables stay; a rerun measures only the others")
    func measurementKilled() async throws {
        let fixture = try await KillFixtures.shared.get()
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        // A copy of the store: the measurement pass writes its tables into the store.
        let store = dir.url.appendingPathComponent("store")
        try FileManager.default.copyItem(at: fixture.store, to: store)
        let plan = dir.url.appendingPathComponent("plan.json")
        let arguments = ["plan", store.path, "--budget", "1/16", "--out", plan.path]
        let child = try DeltaplanProcess(arguments, logs: dir.url, environment: ["DELTAPLAN_STOP_AFTER": "1"])
        try child.kill9AtStop()
        #expect(child.wasKilled)
        #expect(!FileManager.default.fileExists(atPath: plan.path))

        let tables = store.appendingPathComponent("errors").appendingPathComponent(SegmentOrder.default.rawValue)
        func identities() throws -> [String: Int] {
            var out: [String: Int] = [:]
            for name in listing(tables) {
                let attributes = try FileManager.default.attributesOfItem(atPath: tables.appendingPathComponent(name).path)
                out[name] = try #require(attributes[.systemFileNumber] as? Int)
            }
            return out
        }
        let left = try identities()
        #expect((1..<7).contains(left.count), "\(left.count) tables written")

        // The rerun keeps every finished table as it is (files are replaced, never rewritten in
        // place: the same inode is the same file) and measures the others.
        let rerun = try DeltaplanProcess.run(arguments, logs: dir.url)
        #expect(rerun.status == 0, "\(rerun.errors)")
        #expect(FileManager.default.fileExists(atPath: plan.path))
        let after = try identities()
        #expect(after.count == 7)
        for (name, inode) in left { #expect(after[name] == inode, "\(name) was measured again") }
    }

    @Test("merge killed while writing its shard: no merged checkpoint, inspect refuses the path; a rerun writes the uninterrupted merge")
    func mergeKilled() async throws {
        let fixture = try await KillFixtures.shared.get()
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let merged = dir.url.appendingPathComponent("merged")
        let arguments = ["merge", "--base", fixture.pair.base.path, "--artifact", fixture.artifact.path, "--out", merged.path]
        let child = try DeltaplanProcess(arguments, logs: dir.url)
        // Merge reports progress only when done: the moment is its shard's temporary file, inside
        // the temporary directory it publishes at the end.
        try child.kill9(when: {
            listing(dir.url, hidden: true).contains { name in
                name.hasPrefix(".merged.") && !listing(dir.url.appendingPathComponent(name), hidden: true).isEmpty
            }
        })
        #expect(child.wasKilled)

        #expect(!FileManager.default.fileExists(atPath: merged.path))
        let leftovers = listing(dir.url, hidden: true).filter { $0.hasPrefix(".merged.") }
        #expect(leftovers.count == 1, "\(leftovers)")
        for name in leftovers {
            // Inside: the shard's own temporary file, never a model.safetensors.
            #expect(listing(dir.url.appendingPathComponent(name)).isEmpty)
        }
        let inspect = try DeltaplanProcess.run(["inspect", merged.path], logs: dir.url)
        #expect(inspect.status != 0)
        #expect(inspect.errors.contains("no such file or directory"), "\(inspect.errors)")

        let rerun = try DeltaplanProcess.run(arguments, logs: dir.url)
        #expect(rerun.status == 0, "\(rerun.errors)")
        #expect(try differingFiles(merged, fixture.merged) == [])
    }
}
