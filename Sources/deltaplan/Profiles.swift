import ArgumentParser
import Checkpoint
import Foundation
import ModelProfiles
import Optimizer
import Quantization
import Reporting

/// A failure to report to the user: printed as `Error: <message>`, exit status 1.
struct CLIFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
    init(_ error: some Error) { description = String(describing: error) }
}

/// `--profile`: a built-in model profile.
struct ProfileOptions: ParsableArguments {
    @Option(help: "Model profile name (see `deltaplan profiles`), e.g. llama-2-7b.")
    var profile: String

    init() {}

    init(profile: String) { self.profile = profile }

    func load() throws -> (ProfileLibrary, ModelProfile) {
        do {
            let library = try ProfileLibrary.builtIn()
            return (library, try library.model(named: profile))
        } catch { throw CLIFailure(error) }
    }
}

/// `--budget` (or a quality target), `--accounting`, `--group-size`: how much storage a plan may
/// use and how it is counted.
struct StorageOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Storage budget: α relative to the F16 delta ('1/16', '0.0625'; in (0, 1]), a size ('850MiB', '1.2GB', '123456B'; KiB/MiB/GiB = 1024-based, KB/MB/GB = 1000-based) or bits per delta parameter ('1.0bpp'; in (0, 16]).",
        valueName: "budget"), transform: budgetArgument)
    var budget: GivenBudget?

    @Option(help: ArgumentHelp(
        "Instead of --budget: the largest predicted error the plan may have; the plan is the smallest that meets it (from a store). Relative to the error of dropping the whole delta (0.05 = 5%) unless --error-unit absolute.",
        valueName: "error"))
    var maxError: Double?

    @Option(help: "Unit of --max-error: relative (to the error of dropping the whole delta) or absolute (the objective's own units, as plans' predictedError).")
    var errorUnit: ErrorTarget.Unit = .relative

    @Option(help: "How bits are counted: 'artifact' (payload + group scales/zeros + singular values, what the compressor writes) or 'paper' (payload k·r·(h_out+h_in) only).")
    var accounting: Accounting = StorageModel.defaultAccounting

    @Option(help: "Quantization group size (values per F16 scale/zero pair), used by artifact accounting.")
    var groupSize: Int = StorageModel.defaultGroupSize

    func validate() throws {
        guard groupSize > 0 else { throw ValidationError("--group-size must be positive, got \(groupSize)") }
        guard (budget == nil) != (maxError == nil) else { throw ValidationError("give either --budget or --max-error") }
        if let maxError, !(maxError > 0 && maxError.isFinite) {
            throw ValidationError("--max-error must be a positive number, got \(maxError)")
        }
    }

    /// `--max-error` with its unit.
    var target: ErrorTarget? { maxError.map { ErrorTarget(error: $0, unit: errorUnit) } }

    var storage: StorageModel { StorageModel(accounting: accounting, groupSize: groupSize) }
}

struct Profiles: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the built-in model profiles and precision presets.")

    func run() throws {
        let library: ProfileLibrary
        do { library = try ProfileLibrary.builtIn() } catch { throw CLIFailure(error) }
        print("Model profiles")
        var rows = [["name", "layers", "matrices", "parameters", "planned", "description"]]
        for m in library.models {
            let matrices = m.expandedMatrices()
            let planned = matrices.reduce(0) { $0 + $1.rows * $1.columns }
            let all = planned + m.expandedTensors().reduce(0) { $0 + $1.shape.reduce(1, *) }
            rows.append([m.name, "\(m.layers)", "\(matrices.count)", formatCount(all), formatCount(planned), m.description])
        }
        print(alignedTable(rows, rightAligned: [1, 2, 3, 4]))
        print("Precision presets")
        var presets = [["name", "mix", "description"]]
        for p in library.presets { presets.append([p.name, presetMix(p), p.description]) }
        print(alignedTable(presets, rightAligned: []))
    }
}

/// "8×2 + 3×32 + 2×fill".
func presetMix(_ p: PrecisionPreset) -> String {
    p.segments.map { "\($0.bits)×\($0.count.map(String.init) ?? "fill")" }.joined(separator: " + ")
}

/// "6.74 B", "124.4 M".
func formatCount(_ n: Int) -> String {
    let v = Double(n)
    if v >= 1e9 { return String(format: "%.2f B", v / 1e9) }
    if v >= 1e6 { return String(format: "%.1f M", v / 1e6) }
    return "\(n)"
}

/// Columns separated by two spaces; the first row is a header followed by a rule.
func alignedTable(_ rows: [[String]], rightAligned: Set<Int>) -> String {
    var table = TextTable(headers: rows[0], alignments: rows[0].indices.map { rightAligned.contains($0) ? .right : .left })
    for row in rows.dropFirst() { table.append(row) }
    return table.text()
}
