import Checkpoint
import ContentHash
import Foundation

/// What identifies one input file: size, modification time, a hash of its safetensors header
/// (which lists every tensor's name, dtype, shape and offsets) and, in stores, a hash of its whole
/// content. A changed file changes at least one; a file whose only change is its modification time
/// (copied without preserving times, touched, re-extracted) is the same file when its content hash
/// matches the recorded one.
public struct FileFingerprint: Codable, Sendable, Equatable {
    /// Path relative to the input (the file name inside a checkpoint directory).
    public var name: String
    public var size: Int
    /// Seconds since 1970, as the file system reports it.
    public var modified: Double
    public var headerSHA256: String
    /// SHA-256 of the whole file, recorded by `analyze` (nil in stores written before it was, and
    /// in fingerprints taken only to compare: computed then when the modification time differs).
    public var contentSHA256: String?

    /// Fingerprint of a safetensors file (header = 8-byte length + JSON), or of any other small
    /// file (an index JSON) by its whole content; with `hashContent`, also the whole file's SHA-256
    /// (a full read: about a minute for a 7B checkpoint's 27 GB of shards).
    public init(of url: URL, name: String, hashContent: Bool = false) throws(AnalysisError) {
        let attributes: [FileAttributeKey: Any]
        do { attributes = try FileManager.default.attributesOfItem(atPath: url.path) } catch {
            throw .io(path: url.path, reason: "cannot read file attributes: \(error.localizedDescription)")
        }
        self.name = name
        size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            if url.pathExtension == "safetensors" {
                let prefix = try handle.read(upToCount: 8) ?? Data()
                var length: UInt64 = 0
                for (i, byte) in prefix.prefix(8).enumerated() { length |= UInt64(byte) << (8 * UInt64(i)) }
                let header = try handle.read(upToCount: Int(min(length, UInt64(size)))) ?? Data()
                headerSHA256 = Digest.sha256(prefix + header)
            } else {
                headerSHA256 = Digest.sha256(try handle.readToEnd() ?? Data())
            }
        } catch {
            throw .io(path: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        if hashContent { contentSHA256 = try Self.contentHash(url) }
    }

    /// What differs from `old`, in words, or nil when nothing does. A different modification time
    /// is a change unless `old` recorded the content's hash and the file at `url` (this
    /// fingerprint's file) still has it.
    public func change(from old: FileFingerprint, at url: URL) throws(AnalysisError) -> String? {
        if size != old.size { return "\(name) changed size (\(old.size) → \(size) bytes)" }
        if headerSHA256 != old.headerSHA256 { return "\(name) has a different header (tensors changed)" }
        guard modified != old.modified else { return nil }
        guard let recorded = old.contentSHA256 else { return "\(name) was modified since the store was made" }
        let now: String
        if let contentSHA256 { now = contentSHA256 } else { now = try Self.contentHash(url) }
        return now == recorded ? nil : "\(name) has different contents (same size and header: tensor values changed)"
    }

    private static func contentHash(_ url: URL) throws(AnalysisError) -> String {
        do { return try Digest.sha256(fileAt: url) } catch { throw .io(path: url.path, reason: "cannot read: \(error)") }
    }
}

extension FileFingerprint {
    /// The fingerprints of a checkpoint's files (its shards, and the index of a sharded one) with
    /// their URLs, sorted by name as stores record them; with `hashContent`, each file's SHA-256 too.
    public static func files(
        of checkpoint: Checkpoint, hashContent: Bool
    ) throws(AnalysisError) -> [(fingerprint: FileFingerprint, url: URL)] {
        var urls = checkpoint.files.map(\.url)
        if case .sharded = checkpoint.kind { urls.append(checkpoint.url.appendingPathComponent(Checkpoint.indexFileName)) }
        var files: [(fingerprint: FileFingerprint, url: URL)] = []
        for url in urls {
            files.append((try FileFingerprint(of: url, name: url.lastPathComponent, hashContent: hashContent), url))
        }
        return files.sorted { $0.fingerprint.name < $1.fingerprint.name }
    }
}
