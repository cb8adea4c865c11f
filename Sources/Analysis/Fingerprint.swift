import Checkpoint
import Foundation

/// What identifies one input file: size, modification time and a hash of its safetensors header
/// (which lists every tensor's name, dtype, shape and offsets). A changed file changes at least one.
public struct FileFingerprint: Codable, Sendable, Equatable {
    /// Path relative to the input (the file name inside a checkpoint directory).
    public var name: String
    public var size: Int
    /// Seconds since 1970, as the file system reports it.
    public var modified: Double
    public var headerSHA256: String

    /// Fingerprint of a safetensors file (header = 8-byte length + JSON), or of any other small
    /// file (an index JSON) by its whole content.
    public init(of url: URL, name: String) throws(AnalysisError) {
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
    }

    /// What differs from `old`, in words, or nil when nothing does.
    public func change(from old: FileFingerprint) -> String? {
        if size != old.size { return "\(name) changed size (\(old.size) → \(size) bytes)" }
        if headerSHA256 != old.headerSHA256 { return "\(name) has a different header (tensors changed)" }
        if modified != old.modified { return "\(name) was modified since the store was made" }
        return nil
    }
}
