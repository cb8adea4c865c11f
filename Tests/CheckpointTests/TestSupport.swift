import Foundation
import Testing
@testable import Checkpoint

/// SplitMix64: a small repeatable generator for test data.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A fresh temporary directory, removed by `cleanup()`.
struct TemporaryDirectory {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("checkpoint-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    func contents() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
    }
    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// Bytes of a safetensors file assembled by hand: length prefix, header text, data.
func craftedFile(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    let length = declaredLength ?? UInt64(headerBytes.count)
    var out: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) }
    out += headerBytes
    out += data
    return out
}

func craftedFile(headerBytes: [UInt8], data: [UInt8]) -> [UInt8] {
    let length = UInt64(headerBytes.count)
    return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) } + headerBytes + data
}

/// Opens `bytes` written to a temporary file and returns the thrown `CheckpointError`, if any.
func openError(_ bytes: [UInt8]) throws -> CheckpointError? {
    let dir = try TemporaryDirectory()
    defer { dir.cleanup() }
    let url = dir.file("crafted.safetensors")
    try Data(bytes).write(to: url)
    do {
        _ = try SafetensorsFile(contentsOf: url)
        return nil
    } catch {
        return error
    }
}

func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { value in (0..<T.bitWidth / 8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
}
