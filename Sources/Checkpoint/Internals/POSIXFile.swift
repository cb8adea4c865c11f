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
    static func createNew(path: String) throws(CheckpointError) -> POSIXFile {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(path, "open") }
        return POSIXFile(descriptor: fd, path: path)
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

    static var processID: Int32 { getpid() }
}
