import Foundation
import Testing

/// SVG → PNG with `rsvg-convert` (Debian: librsvg2-bin, installed by `.ci/setup`), and the size
/// a PNG's IHDR chunk records.
enum PNGRendering {
    /// `rsvg-convert` on the PATH, or nil.
    static let converter: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/rsvg-convert" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// Run the rendering tests when rsvg-convert is here, and under CI always (where its absence
    /// is a failure of `.ci/setup`, not a reason to skip).
    static let enabled = converter != nil || ProcessInfo.processInfo.environment["CI"] != nil
    static let skipReason: Comment = "rsvg-convert is not installed (Debian: apt-get install librsvg2-bin, or run .ci/setup)"

    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Renders `svg` and returns the PNG's bytes. The PNG is kept as `name` in
    /// `DELTAPLAN_TEST_ARTIFACTS` when that is set (to look at), else removed.
    static func render(_ svg: String, name: String) throws -> Data {
        guard let converter else { throw Failure(description: "rsvg-convert is not installed; CI must install librsvg2-bin") }
        let keep = ProcessInfo.processInfo.environment["DELTAPLAN_TEST_ARTIFACTS"].map(URL.init(fileURLWithPath:))
        let dir = keep ?? FileManager.default.temporaryDirectory.appendingPathComponent("svg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { if keep == nil { try? FileManager.default.removeItem(at: dir) } }
        let input = dir.appendingPathComponent(name + ".svg"), output = dir.appendingPathComponent(name + ".png")
        try Data(svg.utf8).write(to: input)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: converter)
        process.arguments = ["--format", "png", "--output", output.path, input.path]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "rsvg-convert failed (\(process.terminationStatus)): \(String(decoding: message, as: UTF8.self))")
        }
        return try Data(contentsOf: output)
    }

    /// Width and height from a PNG's signature and IHDR chunk (the first chunk, 13 bytes), or nil
    /// when `data` is not a PNG.
    static func size(_ data: Data) -> (width: Int, height: Int)? {
        let bytes = [UInt8](data)
        let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        guard bytes.count > 33, Array(bytes[0..<8]) == signature, Array(bytes[8..<16]) == [0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52],
              Array(bytes.suffix(8)) == [0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]  // IEND and its CRC
        else { return nil }
        func int(_ at: Int) -> Int { bytes[at..<at + 4].reduce(0) { $0 << 8 | Int($1) } }
        return (int(16), int(20))
    }
}
