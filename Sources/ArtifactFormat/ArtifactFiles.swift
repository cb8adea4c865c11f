import Checkpoint
import Foundation

/// Sorted-key, pretty-printed JSON with a trailing newline, written with ``AtomicFile``.
package func writeJSON(_ value: some Encodable, to url: URL) throws(ArtifactError) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    var data: Data
    do { data = try encoder.encode(value) } catch { throw .io(path: url.path, reason: "cannot encode: \(error)") }
    data.append(0x0A)
    try writeFile(data, to: url)
}

/// Writes a file with ``AtomicFile`` (unique temporary name, fsync, rename, directory fsync).
package func writeFile(_ data: Data, to url: URL) throws(ArtifactError) {
    do { try AtomicFile.write(data: data, to: url) } catch { throw ioError(error, url) }
}

/// A uniquely named temporary sibling directory of `out` (``AtomicFile/makeTemporaryDirectory(for:)``).
package func makeTemporaryDirectory(for out: URL) throws(ArtifactError) -> URL {
    do { return try AtomicFile.makeTemporaryDirectory(for: out) } catch { throw ioError(error, out) }
}

/// Renames a finished temporary directory over `out` (``AtomicFile/publishDirectory(_:as:)``): an
/// existing `out` is first moved aside, then removed once the new one is in place.
package func publishDirectory(_ temporary: URL, as out: URL) throws(ArtifactError) {
    do { try AtomicFile.publishDirectory(temporary, as: out) } catch { throw ioError(error, out) }
}

/// `.io` naming the path of a failed atomic write.
private func ioError(_ error: CheckpointError, _ url: URL) -> ArtifactError {
    if case let .writeFailed(path, reason) = error { return .io(path: path, reason: reason) }
    return .io(path: url.path, reason: "\(error)")
}
