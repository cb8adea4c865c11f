import Checkpoint
import Foundation

/// The directories whose files requests may name (`--allow-root`).
///
/// A requested path is accepted when, with every symlink followed (`realpath(3)`), its path
/// components start with the components of one root (also resolved). Comparing components, not
/// string prefixes, keeps `/data/models-evil` out of `/data/models`; resolving first keeps
/// `root/../etc` and `root/link-to-elsewhere` out.
public struct AllowedRoots: Sendable {
    private let roots: [ResolvedPath]
    public let paths: [String]

    /// Resolves each root; a root that does not exist is a setup error naming it.
    public init(_ urls: [URL]) throws(ServiceSetupError) {
        var roots: [ResolvedPath] = []
        for url in urls {
            guard let resolved = ResolvedPath(url.path) else {
                throw .invalidOption(option: "--allow-root", reason: "\(url.path) does not exist or cannot be resolved")
            }
            roots.append(resolved)
        }
        let paths = roots.map(\.path)
        self.roots = roots
        self.paths = paths
    }

    /// The resolved path of `path` (request field `field`), or `pathNotAllowed` (422).
    public func resolve(_ path: String, field: String) throws(APIError) -> String {
        guard path.hasPrefix("/") else {
            throw .pathNotAllowed(field: field, path: path, reason: "is not absolute; give a server-side absolute path")
        }
        guard !path.utf8.contains(0) else { throw .invalidField(field: field, reason: "contains a NUL byte") }
        guard let resolved = ResolvedPath(path) else {
            // Do not reveal whether a path outside the roots exists: both answers are 422.
            throw .pathNotAllowed(field: field, path: path, reason: "does not exist (or is outside the allowed roots)")
        }
        guard roots.contains(where: resolved.isWithin) else {
            throw .pathNotAllowed(
                field: field, path: path,
                reason: roots.isEmpty
                    ? "is not allowed: the server was started without --allow-root"
                    : "resolves to \(resolved.path), outside the allowed roots (\(paths.joined(separator: ", ")))")
        }
        return resolved.path
    }
}
