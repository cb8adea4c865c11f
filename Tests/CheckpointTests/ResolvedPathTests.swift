import Checkpoint
import Foundation
import Testing

@Suite struct ResolvedPathTests {
    /// Links are followed, containment is by whole components (`/x/ab` is not within `/x/a`), and a
    /// missing path or broken link resolves to nil.
    @Test func containmentFollowsLinksAndComparesComponents() throws {
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("deltaplan-paths-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: root) }
        for folder in ["a/inner", "ab", "outside"] {
            try fm.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("a/in-link").path, withDestinationPath: root.appendingPathComponent("a/inner").path)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("a/out-link").path, withDestinationPath: root.appendingPathComponent("outside").path)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("a/broken").path, withDestinationPath: root.appendingPathComponent("nowhere").path)
        let a = try #require(ResolvedPath(root.appendingPathComponent("a").path))
        #expect(try #require(ResolvedPath(root.appendingPathComponent("a/in-link").path)).isWithin(a))
        #expect(try #require(ResolvedPath(root.appendingPathComponent("a/./inner/..").path)) == a)
        #expect(!(try #require(ResolvedPath(root.appendingPathComponent("a/out-link").path)).isWithin(a)))
        #expect(!(try #require(ResolvedPath(root.appendingPathComponent("ab").path)).isWithin(a)))
        #expect(ResolvedPath(root.appendingPathComponent("a/broken").path) == nil)
        #expect(ResolvedPath(root.appendingPathComponent("missing").path) == nil)
        #expect(a.components.last == "a" && a.path.hasPrefix("/"))
    }
}
