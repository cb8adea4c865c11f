import Foundation

/// Atomic replacement of files and directories: the one way this project publishes what it writes
/// (plans, safetensors files and shards, indexes, manifests, caches, reports, artifacts, merges).
///
/// A file goes to a temporary sibling `.<name>.<UUID>.tmp` in the destination's directory, created
/// with `O_CREAT | O_EXCL` so that no two writers (threads of one process or separate processes)
/// ever share one. It is fsynced and closed, renamed over the destination (`rename(2)`: a reader
/// sees the old file or the new one, never a mix), and the directory is fsynced so that the rename
/// survives a crash. On any failure the temporary file is removed, the destination is left as it
/// was, and the error (`CheckpointError.writeFailed`) names the destination.
///
/// Concurrent writers of one destination all succeed; the last rename wins and the destination holds
/// one writer's complete bytes.
///
/// Directories written as a whole (artifacts, merged checkpoints) are built in a temporary sibling
/// directory from ``makeTemporaryDirectory(for:)``, their files written with ``write(data:to:)`` or
/// ``AtomicFileWriter``, then published by ``publishDirectory(_:as:)``.
public enum AtomicFile {
    /// Replaces `url` with `data`, atomically and durably (see ``AtomicFile``).
    public static func write(data: some ContiguousBytes, to url: URL) throws(CheckpointError) {
        let writer = try AtomicFileWriter(destination: url)
        try data.withUnsafeBytes { raw in Result { () throws(CheckpointError) in try writer.write(raw, at: 0) } }.get()
        try writer.commit()
    }

    /// Streams a file into place: `body` writes through the open temporary file, then the file is
    /// committed (fsync, rename, directory fsync). If `body` throws, the temporary file is removed,
    /// the destination is untouched and `body`'s error is rethrown as it is.
    public static func write<R>(to url: URL, _ body: (AtomicFileWriter) throws -> R) throws -> R {
        let writer = try AtomicFileWriter(destination: url)
        let result: R
        do { result = try body(writer) } catch {
            writer.abandon()
            throw error
        }
        try writer.commit()
        return result
    }

    /// The unique temporary sibling `.<name>.<UUID>.<kind>` of `destination`.
    static func sibling(of destination: URL, kind: String) -> URL {
        destination.deletingLastPathComponent()
            .appendingPathComponent(".\(destination.lastPathComponent).\(UUID().uuidString).\(kind)")
    }

    /// Removes the temporary siblings `.<name>.<UUID>.tmp` of `destination` that writers killed
    /// before their rename left behind (files or directories); `destination` itself is untouched.
    /// Only for a destination that nothing else is writing at the time (a writer's live temporary
    /// would go too). Removal is best effort: what cannot be removed stays.
    public static func removeLeftovers(of destination: URL) {
        let directory = destination.deletingLastPathComponent()
        let prefix = ".\(destination.lastPathComponent)."
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names where name.hasPrefix(prefix) && name.hasSuffix(".tmp")
            && UUID(uuidString: String(name.dropFirst(prefix.count).dropLast(".tmp".count))) != nil {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
    }

    // MARK: Directories

    /// Creates an empty temporary directory `.<name>.<UUID>.tmp` beside `destination` (and the
    /// parent directory if it is missing), to be filled and then published with
    /// ``publishDirectory(_:as:)``. The caller removes it if it gives up.
    public static func makeTemporaryDirectory(for destination: URL) throws(CheckpointError) -> URL {
        let temporary = sibling(of: destination, kind: "tmp")
        do { try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true) } catch {
            throw .writeFailed(path: destination.path, reason: "cannot create the temporary directory \(temporary.path): \(error.localizedDescription)")
        }
        return temporary
    }

    /// Renames the finished directory `temporary` over `destination`.
    ///
    /// `temporary` is fsynced first (its files were fsynced as they were written). An existing
    /// `destination` is moved aside to `.<name>.<UUID>.old` and removed once the new directory is in
    /// place, then the parent directory is fsynced. If the rename fails, the old destination is moved
    /// back. Two publishers of one destination both succeed (the last one wins).
    public static func publishDirectory(_ temporary: URL, as destination: URL) throws(CheckpointError) {
        let fm = FileManager.default
        POSIXFile.syncDirectory(temporary.path)
        var asides: [URL] = []
        defer { for aside in asides { try? fm.removeItem(at: aside) } }
        // A bounded retry: each round moves aside whatever another publisher put in the way.
        for _ in 0..<16 {
            guard let code = POSIXFile.renameReportingErrno(temporary.path, to: destination.path) else {
                POSIXFile.syncDirectory(destination.deletingLastPathComponent().path)
                return
            }
            guard POSIXFile.isOccupied(errno: code) else {
                restore(asides, to: destination)
                throw .writeFailed(path: destination.path,
                                   reason: "cannot rename the finished directory into place: \(POSIXFile.describe(errno: code))")
            }
            let aside = sibling(of: destination, kind: "old")
            if let code = POSIXFile.renameReportingErrno(destination.path, to: aside.path) {
                guard POSIXFile.isMissing(errno: code) else {  // gone meanwhile: try again
                    restore(asides, to: destination)
                    throw .writeFailed(path: destination.path,
                                       reason: "cannot move the existing directory aside: \(POSIXFile.describe(errno: code))")
                }
            } else {
                asides.append(aside)
            }
        }
        restore(asides, to: destination)
        throw .writeFailed(path: destination.path, reason: "cannot rename the finished directory into place: other writers keep replacing it")
    }

    /// Puts the first directory moved aside (the one that was there before) back at `destination`.
    private static func restore(_ asides: [URL], to destination: URL) {
        guard let first = asides.first, POSIXFile.renameReportingErrno(first.path, to: destination.path) == nil else { return }
        POSIXFile.syncDirectory(destination.deletingLastPathComponent().path)
    }
}

/// An open temporary file that becomes its destination on ``commit()`` (see ``AtomicFile``): for
/// writers that stream (safetensors files, shards) or write at offsets.
///
/// A class because it owns an open file descriptor and a temporary file: if it is dropped before
/// ``commit()`` succeeds, `deinit` closes and removes the temporary file and the destination is
/// untouched. Errors name the destination.
public final class AtomicFileWriter {
    /// The file this writer replaces on ``commit()``.
    public let destination: URL
    /// The temporary file `.<name>.<UUID>.tmp` in the destination's directory.
    public let temporary: URL
    private var file: POSIXFile?
    private var end = 0
    private var committed = false

    /// Creates the temporary file (the destination's directory must exist and be writable).
    public init(destination: URL) throws(CheckpointError) {
        self.destination = destination
        self.temporary = AtomicFile.sibling(of: destination, kind: "tmp")
        self.file = try POSIXFile.createNew(path: temporary.path, reportedAs: destination.path)
    }

    deinit {
        if !committed { abandon() }
    }

    private func openFile() throws(CheckpointError) -> POSIXFile {
        guard let file, !committed else {
            throw .writeFailed(path: destination.path, reason: "the atomic write is already committed or abandoned")
        }
        return file
    }

    /// Writes all of `bytes` at `offset` (`pwrite`; the file grows as needed).
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError) {
        precondition(offset >= 0, "negative file offset \(offset)")
        let file = try openFile()
        if !bytes.isEmpty { try file.write(bytes, at: offset) }
        end = max(end, offset + bytes.count)
    }

    /// Writes `bytes` after the furthest byte written so far.
    public func append(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        try write(bytes, at: end)
    }

    /// Writes `data` after the furthest byte written so far.
    public func append(_ data: some ContiguousBytes) throws(CheckpointError) {
        try data.withUnsafeBytes { raw in Result { () throws(CheckpointError) in try append(raw) } }.get()
    }

    /// Fsyncs and closes the temporary file, renames it over the destination and fsyncs the
    /// directory (best effort: some file systems refuse to sync a directory). On failure the
    /// temporary file is removed. Afterwards the writer accepts nothing more.
    public func commit() throws(CheckpointError) {
        let file = try openFile()
        do throws(CheckpointError) {
            try file.sync()
            self.file = nil  // closed below whether or not close() reports an error
            try file.close()
            try POSIXFile.rename(temporary.path, to: destination.path)
        } catch {
            abandon()
            throw error
        }
        committed = true
        POSIXFile.syncDirectory(destination.deletingLastPathComponent().path)
    }

    /// Closes and removes the temporary file; the destination is untouched. Does nothing after a
    /// successful ``commit()``.
    public func abandon() {
        guard !committed else { return }
        if let file {
            try? file.close()
            self.file = nil
        }
        POSIXFile.removeQuietly(temporary.path)
    }
}
