import Foundation

/// A path with every symbolic link followed (`realpath(3)`): absolute, no `.` or `..`. What the
/// checks "does this path lie under that folder" compare, component by component.
public struct ResolvedPath: Sendable, Equatable {
    public let path: String
    /// The path's components, `/a/b` → `["a", "b"]`.
    public let components: [String]

    /// Nil when `path` does not exist (or a link in it is broken).
    public init?(_ path: String) {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        self.path = String(cString: resolved)
        components = self.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }

    /// Whether this path is `root` or lies below it.
    public func isWithin(_ root: ResolvedPath) -> Bool {
        components.count >= root.components.count && Array(components.prefix(root.components.count)) == root.components
    }
}
