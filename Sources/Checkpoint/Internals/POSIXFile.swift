#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The only file that calls POSIX file APIs: thin wrappers that turn `errno` into
/// `CheckpointError.writeFailed` naming the path.
struct POSIXFile {
    let descriptor: Int32
    let path: String

    private static func failure(_ path: String, _ operation: String) -> CheckpointError {
        .writeFailed(path: path, reason: "\(operation): \(String(cString: strerror(errno)))")
    }

    /// Creates a new file (`O_CREAT | O_EXCL`, mode 0644 before umask); fails if it exists.
    /// Errors, then and later, name `reportedPath` (the destination a temporary file stands for).
    static func createNew(path: String, reportedAs reportedPath: String? = nil) throws(CheckpointError) -> POSIXFile {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(reportedPath ?? path, reportedPath == nil ? "open" : "open \(path)") }
        return POSIXFile(descriptor: fd, path: reportedPath ?? path)
    }

    /// Writes all of `bytes` at file offset `offset` (`pwrite`, retried on short writes and EINTR).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw Self.failure(path, "pwrite")
            }
            done += n
        }
    }

    /// `fsync`: data and metadata reach the disk before we rename.
    func sync() throws(CheckpointError) {
        guard fsync(descriptor) == 0 else { throw Self.failure(path, "fsync") }
    }

    func close() throws(CheckpointError) {
        #if canImport(Glibc)
        let result = Glibc.close(descriptor)
        #else
        let result = Darwin.close(descriptor)
        #endif
        guard result == 0 else { throw Self.failure(path, "close") }
    }

    /// Atomically replaces `destination` with `source` (`rename(2)`; same file system).
    static func rename(_ source: String, to destination: String) throws(CheckpointError) {
        #if canImport(Glibc)
        let result = Glibc.rename(source, destination)
        #else
        let result = Darwin.rename(source, destination)
        #endif
        guard result == 0 else { throw failure(destination, "rename") }
    }

    /// `rename(2)` that reports instead of throwing: `nil` on success, else `errno`.
    static func renameReportingErrno(_ source: String, to destination: String) -> Int32? {
        #if canImport(Glibc)
        let result = Glibc.rename(source, destination)
        #else
        let result = Darwin.rename(source, destination)
        #endif
        return result == 0 ? nil : errno
    }

    /// `strerror` of an `errno` value.
    static func describe(errno code: Int32) -> String { String(cString: strerror(code)) }

    /// Whether `errno` from renaming a directory over `destination` means "the destination is in the way"
    /// (a non-empty directory, or not a directory).
    static func isOccupied(errno code: Int32) -> Bool { code == ENOTEMPTY || code == EEXIST || code == ENOTDIR || code == EISDIR }

    /// Whether `errno` means the path does not exist.
    static func isMissing(errno code: Int32) -> Bool { code == ENOENT }

    /// Removes a file, ignoring errors (used to clean up temporary files).
    static func removeQuietly(_ path: String) {
        _ = unlink(path)
    }

    /// `fsync` on a directory so a rename inside it is durable. Best effort: some file systems
    /// refuse to open directories for syncing.
    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        #if canImport(Glibc)
        _ = Glibc.close(fd)
        #else
        _ = Darwin.close(fd)
        #endif
    }
}

/// A read-only private mapping of a whole file (`mmap(PROT_READ, MAP_PRIVATE)`), unmapped when
/// the last reference goes away.
///
/// Reads go through ``withBytes(_:_:)``, which hands out the mapped bytes without copying and then
/// releases the pages it covered (`madvise(MADV_DONTNEED)`): they stay in the page cache but leave
/// this process's resident set, so reading tensor after tensor from a 13 GB checkpoint costs the
/// copies the caller keeps, not the mapping. A later read of the same bytes faults them back in from
/// the file. Safe because the mapping is never written: dropping a clean private page loses nothing.
final class MappedFile: @unchecked Sendable {
    let path: String
    let size: Int
    private let base: UnsafeRawPointer?
    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Maps the file at `path`. A zero-length file gets an empty region (mmap refuses length 0).
    init(path: String) throws(CheckpointError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer {
            #if canImport(Glibc)
            _ = Glibc.close(fd)
            #else
            _ = Darwin.close(fd)
            #endif
        }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw .unreadable(path: path, reason: "is not a regular file") }
        self.path = path
        self.size = Int(status.st_size)
        guard size > 0 else {
            base = nil
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw .unreadable(path: path, reason: "mmap: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(address)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// Calls `body` with bytes `range` of the file (which must lie inside it), then releases the
    /// whole pages they span from the resident set.
    func withBytes<R>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "read of \(range) outside \(path) (\(size) bytes)")
        guard let base, !range.isEmpty else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        defer {
            let first = range.lowerBound / Self.pageSize * Self.pageSize
            let end = min(size, (range.upperBound + Self.pageSize - 1) / Self.pageSize * Self.pageSize)
            _ = madvise(UnsafeMutableRawPointer(mutating: base + first), end - first, MADV_DONTNEED)
        }
        return try body(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
    }
}
