import Crypto
import Checkpoint
import Foundation

/// SHA-256 digests as lowercase hex, for content fingerprints and checksums.
public enum Digest {
    public static func sha256(_ data: some DataProtocol) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// SHA-256 of a whole file, read in 8 MiB chunks (constant memory).
    public static func sha256(fileAt url: URL) throws(CheckpointError) -> String {
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            var hasher = SHA256()
            while let chunk = try handle.read(upToCount: 8 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
            return hasher.finalize().map { String(format: "%02x", $0) }.joined()
        } catch {
            throw .unreadable(path: url.path, reason: "cannot read for checksum: \(error.localizedDescription)")
        }
    }
}
