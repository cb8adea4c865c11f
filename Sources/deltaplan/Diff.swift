import ArgumentParser
import Foundation
import Optimizer
import Reporting

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Where two plans of the same matrices put their bits differently: per matrix and per layer type.")

    @Argument(help: "The first plan file.")
    var a: String

    @Argument(help: "The second plan file.")
    var b: String

    func run() throws {
        let diff: PlanDiff
        do {
            diff = try PlanDiff(try Plan.read(from: URL(fileURLWithPath: a)), try Plan.read(from: URL(fileURLWithPath: b)), a: a, b: b)
        } catch { throw CLIFailure(error) }
        print(diffText(diff, a: a, b: b), terminator: "")
    }
}

/// The diff as two tables: the matrices whose segments differ (a matrix a pin fixed says so,
/// with the pin's spec), then every layer type.
func diffText(_ diff: PlanDiff, a: String, b: String) -> String {
    func bpp(_ bits: Int, _ parameters: Int) -> String { String(format: "%.4f", Double(bits) / Double(max(parameters, 1))) }
    func error(_ e: Double?) -> String { e.map { String(format: "%.4e", $0) } ?? "—" }
    func change(_ x: Double?, _ y: Double?) -> String {
        guard let x, let y, x > 0 else { return "—" }
        return String(format: "%+.1f%%", (y / x - 1) * 100)
    }
    func mix(_ side: PlanDiff.Side) -> String {
        let mix = side.dense ? "dense F16" : side.segments.isEmpty ? "none" : side.segments.map { "\($0.bits)×\($0.count)" }.joined(separator: " + ")
        return mix + (side.pin.map { " (pin \($0.spec))" } ?? "")
    }
    var text = "a = \(a)\nb = \(b)\n"
    if diff.matrices.isEmpty {
        text += "every matrix has the same segments in both plans\n"
    } else {
        var rows = [["matrix", "a segments", "b segments", "a bits/param", "b bits/param", "a error", "b error", "error b/a"]]
        for m in diff.matrices {
            rows.append([m.name, mix(m.a), mix(m.b), bpp(m.a.storageBits, m.parameters), bpp(m.b.storageBits, m.parameters),
                         error(m.a.predictedError), error(m.b.predictedError), change(m.a.predictedError, m.b.predictedError)])
        }
        text += "\(diff.matrices.count) matrices differ:\n" + alignedTable(rows, rightAligned: Set(3..<8))
    }
    var rows = [["type", "a bits/param", "b bits/param", "a storage", "b storage", "a error", "b error", "error b/a"]]
    for t in diff.types {
        rows.append([t.type.rawValue, bpp(t.a.storageBits, t.parameters), bpp(t.b.storageBits, t.parameters),
                     Format.bytes(Double(t.a.storageBits) / 8), Format.bytes(Double(t.b.storageBits) / 8),
                     error(t.a.predictedError), error(t.b.predictedError), change(t.a.predictedError, t.b.predictedError)])
    }
    return text + "by layer type:\n" + alignedTable(rows, rightAligned: Set(1..<8))
}
