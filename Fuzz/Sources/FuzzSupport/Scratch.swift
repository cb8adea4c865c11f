import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The harnesses' scratch space: one directory per process (in `/dev/shm` when it exists, so that
/// writing an input costs no disk I/O), removed at exit.
///
/// The readers under test open paths, not buffers, as `deltaplan` does: each input is written to a
/// file first (`write(_:to:)`, about 10 µs) and the reader opens that file.
public enum Scratch {
    public static let directory: URL = {
        let parent = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let url = URL(fileURLWithPath: parent).appendingPathComponent("deltaplan-fuzz-\(getpid())", isDirectory: true)
        try? FileManager.default.removeItem(at: url)
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            fatalError("cannot create the scratch directory \(url.path): \(error)")
        }
        atexit { try? FileManager.default.removeItem(at: Scratch.directory) }
        return url
    }()

    /// `name` inside the scratch directory.
    public static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// Replaces the file at `url` with `bytes` (`open(O_TRUNC)`, `write`, `close`).
    public static func write(_ bytes: UnsafeRawBufferPointer, to url: URL) {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "cannot open \(url.path): errno \(errno)")
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            precondition(n > 0 || errno == EINTR, "cannot write \(url.path): errno \(errno)")
            if n > 0 { done += n }
        }
        close(fd)
    }

    public static func write(_ data: Data, to url: URL) {
        data.withUnsafeBytes { write($0, to: url) }
    }
}

/// The input libFuzzer passes (its pointer is null when the input is empty).
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size)
}
