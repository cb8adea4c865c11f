import ArgumentParser
import Foundation
import Optimizer

/// `deltaplan show plan.json`: the summary `plan` prints, for a plan file, and its picture.
struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print a plan file's summary (as `plan` does) and optionally draw it.",
        discussion: """
            --plot writes an SVG: a heatmap of layers (rows) × matrix kinds (columns) coloured by bits per \
            delta parameter, beside one of each matrix's predicted relative error (log scale; a plan made \
            from a profile's shapes has none, and the picture says so).
            """)

    @Argument(help: "The plan file (from `deltaplan plan` or `deltaplan fleet`).")
    var plan: String

    @Option(help: "Also write a picture of the plan here (SVG, atomically).")
    var plot: String?

    func validate() throws {
        if let plot { try validateOutputPath(plot, option: "--plot") }
    }

    func run() throws {
        let plan: Plan
        do { plan = try Plan.read(from: URL(fileURLWithPath: self.plan)) } catch { throw CLIFailure(error) }
        print(planSummary(plan), terminator: "")
        if let plot {
            try writeAtomically(plan.svg(), to: URL(fileURLWithPath: plot))
            print("wrote \(plot)")
        }
    }
}
