import Foundation
import Testing
@testable import Checkpoint

@Suite struct AtomicFileTests {
    struct Refused: Error, Equatable {}

    /// Distinct contents, one per writer: 256 KiB of one byte value each, so that a mix of two
    /// writers (or a truncated file) matches none of them.
    static let contents: [[UInt8]] = (0..<8).map { [UInt8](repeating: UInt8(0x41 + $0), count: 1 << 18) }

    /// Writes `bytes` through the streaming form in 4 KiB appends (a long window for collisions).
    static func stream(_ bytes: [UInt8], to url: URL) throws {
        try AtomicFile.write(to: url) { writer in
            for start in stride(from: 0, to: bytes.count, by: 4096) {
                try bytes[start ..< min(bytes.count, start + 4096)].withUnsafeBytes { try writer.append($0) }
            }
        }
    }

    @Test func writesAndReplaces() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("out.bin")
        try AtomicFile.write(data: Array("first".utf8), to: url)
        #expect(try Data(contentsOf: url) == Data("first".utf8))
        try AtomicFile.write(data: Data("second, longer".utf8), to: url)
        #expect(try Data(contentsOf: url) == Data("second, longer".utf8))
        try Self.stream(Self.contents[0], to: url)
        #expect(try [UInt8](Data(contentsOf: url)) == Self.contents[0])
        try AtomicFile.write(data: [UInt8](), to: url)
        #expect(try Data(contentsOf: url).isEmpty)
        #expect(try dir.contents() == ["out.bin"])
    }

    /// What killed writers left beside a destination goes; the destination, other files' temporaries
    /// and names that only look alike stay.
    @Test func removesLeftoversOfOneDestination() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("out.bin")
        try AtomicFile.write(data: Array("kept".utf8), to: url)
        let uuid = UUID().uuidString
        let stay = [".out.bin.not-a-uuid.tmp", ".out.bin.\(uuid).old", ".other.bin.\(uuid).tmp", "out.bin.\(uuid).tmp"]
        for name in stay + [".out.bin.\(uuid).tmp"] { try Data("x".utf8).write(to: dir.file(name)) }
        try FileManager.default.createDirectory(at: dir.file(".out.bin.\(UUID().uuidString).tmp"), withIntermediateDirectories: false)
        AtomicFile.removeLeftovers(of: url)
        #expect(try dir.contents() == (stay + ["out.bin"]).sorted())
        #expect(try Data(contentsOf: url) == Data("kept".utf8))
    }

    /// Writers at offsets (as `SafetensorsWriter` does) produce the bytes at those offsets.
    @Test func writesAtOffsets() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("out.bin")
        let writer = try AtomicFileWriter(destination: url)
        try [UInt8]([5, 6]).withUnsafeBytes { try writer.write($0, at: 3) }
        try [UInt8]([1, 2, 3]).withUnsafeBytes { try writer.write($0, at: 0) }
        try writer.append([UInt8]([7]))
        #expect(!FileManager.default.fileExists(atPath: url.path))  // nothing visible before commit
        try writer.commit()
        #expect(try [UInt8](Data(contentsOf: url)) == [1, 2, 3, 5, 6, 7])
        #expect(throws: CheckpointError.self) { try writer.append([UInt8]([8])) }
        #expect(try dir.contents() == ["out.bin"])
    }

    /// Eight writers of one destination in one process, repeatedly: every write succeeds and the
    /// file is always one writer's complete contents, with no temporary file left behind.
    @Test func concurrentWritersOfOneDestination() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("plan.json")
        for _ in 0..<6 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, bytes) in Self.contents.enumerated() {
                    group.addTask {
                        if i.isMultiple(of: 2) { try AtomicFile.write(data: bytes, to: url) } else { try Self.stream(bytes, to: url) }
                    }
                }
                try await group.waitForAll()
            }
            let result = try [UInt8](Data(contentsOf: url))
            #expect(Self.contents.contains(result), "a mix or a truncation: \(result.count) bytes")
            #expect(try dir.contents() == ["plan.json"])
        }
    }

    /// A body that throws: its error comes back unchanged, the previous file is untouched and no
    /// temporary file remains.
    @Test func throwingBodyLeavesThePreviousFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("table.safetensors")
        try AtomicFile.write(data: Array("previous".utf8), to: url)
        #expect(throws: Refused()) {
            try AtomicFile.write(to: url) { writer in
                try writer.append(Self.contents[1])
                throw Refused()
            }
        }
        #expect(try Data(contentsOf: url) == Data("previous".utf8))
        #expect(try dir.contents() == ["table.safetensors"])
    }

    /// A writer dropped before `commit()` removes its temporary file.
    @Test func droppedWriterRemovesItsTemporaryFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var writer: AtomicFileWriter? = try AtomicFileWriter(destination: dir.file("x.bin"))
        try writer!.append(Self.contents[2])
        #expect(try dir.contents().count == 1 && dir.contents()[0].hasPrefix(".x.bin.") && dir.contents()[0].hasSuffix(".tmp"))
        writer = nil
        #expect(try dir.contents() == [])
    }

    /// The directory cannot take the temporary file: the error names the destination.
    @Test func missingDirectoryIsNamed() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.url.appendingPathComponent("missing").appendingPathComponent("plan.json")
        let error = #expect(throws: CheckpointError.self) { try AtomicFile.write(data: Array("x".utf8), to: url) }
        guard case let .writeFailed(path, reason)? = error else {
            Issue.record("expected writeFailed, got \(String(describing: error))")
            return
        }
        #expect(path == url.path)
        #expect(reason.contains("No such file or directory"), "\(reason)")
        #expect(error?.description.hasPrefix(url.path) == true)
        #expect(try dir.contents() == [])
    }

    /// The rename fails (a non-empty directory is in the way): the error names the destination,
    /// the destination is untouched and the temporary file is gone.
    @Test func failedRenameLeavesNoTemporaryFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("occupied")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
        try Data("keep".utf8).write(to: url.appendingPathComponent("inside"))
        let error = #expect(throws: CheckpointError.self) { try Self.stream(Self.contents[3], to: url) }
        guard case let .writeFailed(path, _)? = error else {
            Issue.record("expected writeFailed, got \(String(describing: error))")
            return
        }
        #expect(path == url.path)
        #expect(try dir.contents() == ["occupied"])
        #expect(try Data(contentsOf: url.appendingPathComponent("inside")) == Data("keep".utf8))
    }

    // MARK: Directories

    static func fill(_ directory: URL, with bytes: [UInt8]) throws {
        try AtomicFile.write(data: bytes, to: directory.appendingPathComponent("a.bin"))
        try AtomicFile.write(data: bytes.reversed(), to: directory.appendingPathComponent("b.bin"))
    }

    static func check(_ directory: URL) throws -> Bool {
        let a = try [UInt8](Data(contentsOf: directory.appendingPathComponent("a.bin")))
        let b = try [UInt8](Data(contentsOf: directory.appendingPathComponent("b.bin")))
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        return names == ["a.bin", "b.bin"] && contents.contains(a) && b == a.reversed()
    }

    @Test func publishesAndReplacesADirectory() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let out = dir.file("artifact")
        for bytes in Self.contents.prefix(2) {
            let temporary = try AtomicFile.makeTemporaryDirectory(for: out)
            #expect(temporary.lastPathComponent.hasPrefix(".artifact.") && temporary.lastPathComponent.hasSuffix(".tmp"))
            try Self.fill(temporary, with: bytes)
            try AtomicFile.publishDirectory(temporary, as: out)
            #expect(try Self.check(out))
            #expect(try [UInt8](Data(contentsOf: out.appendingPathComponent("a.bin"))) == bytes)
            #expect(try dir.contents() == ["artifact"])
        }
    }

    /// Concurrent publishers of one directory all succeed; the result is one complete directory
    /// and nothing is left beside it.
    @Test func concurrentPublishersOfOneDirectory() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let out = dir.file("merged")
        for _ in 0..<4 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for bytes in Self.contents {
                    group.addTask {
                        let temporary = try AtomicFile.makeTemporaryDirectory(for: out)
                        try Self.fill(temporary, with: bytes)
                        try AtomicFile.publishDirectory(temporary, as: out)
                    }
                }
                try await group.waitForAll()
            }
            #expect(try Self.check(out))
            #expect(try dir.contents() == ["merged"])
        }
    }

    /// A publication that cannot happen (the parent is gone) names the destination and leaves the
    /// temporary directory for the caller to remove.
    @Test func failedPublicationIsNamed() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let temporary = try AtomicFile.makeTemporaryDirectory(for: dir.file("artifact"))
        try Self.fill(temporary, with: Self.contents[0])
        let out = dir.url.appendingPathComponent("gone").appendingPathComponent("artifact")
        let error = #expect(throws: CheckpointError.self) { try AtomicFile.publishDirectory(temporary, as: out) }
        guard case let .writeFailed(path, _)? = error else {
            Issue.record("expected writeFailed, got \(String(describing: error))")
            return
        }
        #expect(path == out.path)
        #expect(try Self.check(temporary))
    }
}
