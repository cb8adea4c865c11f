import ArgumentParser
import Checkpoint
import Foundation

/// `deltaplan inspect PATH [--format table|json]`: lists a checkpoint's tensors and totals.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the tensors of a safetensors checkpoint (file, or directory with model.safetensors or a sharded index).")

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, json
    }

    @Argument(help: "A .safetensors file or a checkpoint directory.")
    var path: String

    @Option(help: "Output format: table or json.")
    var format: Format = .table

    func run() throws {
        let checkpoint = try Checkpoint(at: URL(fileURLWithPath: path))
        let summary = CheckpointSummary(checkpoint)
        switch format {
        case .table: print(summary.table(), terminator: "")
        case .json: print(summary.json(), terminator: "")
        }
    }
}
