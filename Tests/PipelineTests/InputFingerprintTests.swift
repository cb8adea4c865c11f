import Analysis
import ArtifactFormat
import Checkpoint
import Foundation
import Testing
@testable import Pipeline

/// Stores record each input file's content hash, so a file whose only change is its modification
/// time (copied, touched, re-extracted) still matches, and a file whose tensor values changed
/// under the same size and header does not.
@Suite struct InputFingerprintTests {
    @Test func sameBytesUnderANewTimeMatchAndChangedValuesDoNot() throws {
        let f = try ArtifactFixture.get()
        let recorded = f.store.manifest.inputs.finetuned
        let original = f.paths.finetuned.appendingPathComponent(Checkpoint.singleFileName)
        let bytes = try Data(contentsOf: original)
        // The recorded hash is the file's SHA-256, checked against coreutils.
        let record = try #require(recorded.files.first { $0.name == Checkpoint.singleFileName })
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [original.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let coreutils = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).prefix(64)
        #expect(record.contentSHA256 == String(coreutils))

        // A copy of the fine-tuned checkpoint, verified as compress does (modification times checked).
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("fingerprint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: copy) }
        let file = copy.appendingPathComponent(Checkpoint.singleFileName)
        func write(_ data: Data, modified: Date) throws {
            try data.write(to: file)
            try FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: file.path)
        }
        func verify() throws {
            try verifyInput(try Checkpoint(at: copy), path: copy.path, against: recorded, role: "fine-tuned", checkModified: true)
        }
        let then = Date(timeIntervalSince1970: record.modified)
        try write(bytes, modified: then)
        try verify()
        try write(bytes, modified: then.addingTimeInterval(3600))
        try verify()

        // One byte of the last tensor's values changed: same size, same header, new contents.
        var changed = bytes
        changed[changed.count - 1] ^= 0x01
        try write(changed, modified: then.addingTimeInterval(3600))
        #expect(throws: ArtifactError.inputMismatch(
            input: "fine-tuned", path: copy.path,
            reason: "\(Checkpoint.singleFileName) has different contents (same size and header: tensor values changed)")) { try verify() }

        // A store written before content hashes: a new time is a change, as it was.
        var old = recorded
        old.files = old.files.map { var r = $0; r.contentSHA256 = nil; return r }
        try write(bytes, modified: then.addingTimeInterval(3600))
        #expect(throws: ArtifactError.inputMismatch(
            input: "fine-tuned", path: copy.path, reason: "\(Checkpoint.singleFileName) was modified since the store was made")) {
            try verifyInput(try Checkpoint(at: copy), path: copy.path, against: old, role: "fine-tuned", checkModified: true)
        }
    }
}
