import Analysis
import ArgumentParser
import ArtifactFormat
import Foundation
import Pipeline
import Reporting

/// `deltaplan evaluate`: actual errors of an artifact, beside the plan's predictions and baselines.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Measure an artifact's actual errors against the true delta, beside the plan's predictions and the low-rank and BitDelta baselines.",
        discussion: """
        Activation error ‖(ΔW − ΔŴ)X‖² uses the calibration entry's raw input rows when present, else its Gram \
        (tr(E H Eᵀ)); the X column gives the source and its number of tokens. Predictions come from the Gram of \
        all calibration tokens, so when the input rows are a sample, actual/pred also carries sampling noise. 'low-rank' is the 16-bit top-r SVD at the plan's storage (r = bits / (16·(h_out+h_in)+16), \
        from the store's factors); 'bitdelta' is sign(ΔW)·mean|ΔW|.
        """)

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable { case table, markdown, json }

    @Option(help: "The artifact directory.")
    var artifact: String

    @Option(help: "The base checkpoint.")
    var base: String

    @Option(help: "The fine-tuned checkpoint.")
    var finetuned: String

    @Option(help: "The calibration file the store was analyzed with (default: the one recorded in the store's manifest).")
    var calibration: String?

    @Option(help: "The spectrum store the artifact was made from (its factors give the low-rank baseline); default: the path recorded in the artifact.")
    var store: String?

    @Option(help: "Output format: table, markdown or json.")
    var format: OutputFormat = .table

    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        let report: EvaluationReport
        let progress = TerminalProgress(label: "evaluate")
        do {
            let artifact = try Artifact(at: URL(fileURLWithPath: self.artifact))
            let storeURL = URL(fileURLWithPath: store ?? artifact.manifest.store.path)
            let spectrumStore: SpectrumStore
            do { spectrumStore = try SpectrumStore(at: storeURL) } catch {
                throw CLIFailure("cannot open the spectrum store \(storeURL.path)\(store == nil ? " (the path recorded in the artifact)" : ""): \(error); pass --store with the store the artifact was made from")
            }
            report = try evaluate(
                artifact: artifact, base: URL(fileURLWithPath: base), finetuned: URL(fileURLWithPath: finetuned),
                calibration: try spectrumStore.calibrationSet(given: calibration.map { URL(fileURLWithPath: $0) }), store: spectrumStore,
                parallelism: threadOptions.parallelism()
            ) { done, total, name in
                progress.update(done: Double(done), total: Double(total), step: done, steps: total, current: name, finished: done == total)
            }
        } catch { throw CLIFailure(error) }
        progress.finish("evaluate: done")
        for warning in report.warnings { progress.note("warning: \(warning)") }
        switch format {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            say(String(decoding: try encoder.encode(report), as: UTF8.self))
        case .table, .markdown:
            let tables = evaluationTables(report)
            for (title, table) in tables {
                say(format == .markdown ? "### \(title)\n" : "\(title):")
                say(format == .markdown ? table.markdown() : table.text())
            }
        }
    }
}

func evaluationTables(_ report: EvaluationReport) -> [(String, TextTable)] {
    func e(_ x: Double?) -> String { x.map { Format.significant($0, digits: 3) } ?? "–" }
    // Under a sensitivity objective the plan predicted L(E): its actual relative value comes first,
    // then the activation proxy; actual/pred always compares the plan's own objective.
    let sensitivity = report.sensitivityObjective != nil
    let objectiveName = report.sensitivityObjective?.rawValue ?? ""
    let objectiveHeaders = sensitivity ? ["actual \(objectiveName) rel"] : []
    func ratio(_ error: Double?, _ energy: Double?) -> Double? {
        guard let error, let energy, energy > 0 else { return nil }
        return error / energy
    }
    var perMatrix = TextTable(
        headers: ["matrix", "shape", "X (tokens)"] + objectiveHeaders
            + ["actual act rel", "predicted rel", "actual/pred", "weight rel", "low-rank rel (r)", "bitdelta rel"],
        alignments: [.left, .left, .left] + objectiveHeaders.map { _ in .right } + [.right, .right, .right, .right, .right, .right])
    for m in report.matrices {
        let objective = sensitivity ? [e(ratio(m.plan.objectiveError, m.objectiveEnergy))] : []
        let lowRank = sensitivity ? ratio(m.lowRank.objectiveError, m.objectiveEnergy) : m.lowRank.relativeActivationError
        let bitDelta = sensitivity ? ratio(m.bitDelta.objectiveError, m.objectiveEnergy) : m.bitDelta.relativeActivationError
        perMatrix.append([m.name, "\(m.shape[0])×\(m.shape[1])", m.errorSource + (m.tokens.map { " (\($0))" } ?? "")] + objective
                         + [e(m.plan.relativeActivationError), e(m.predictedRelativeError), e(m.actualOverPredicted),
                            e(m.plan.relativeWeightError), "\(e(lowRank)) (\(m.lowRankRank))", e(bitDelta)])
    }
    var summary = TextTable(
        headers: ["group", "matrices"] + objectiveHeaders
            + ["actual act rel", "predicted rel", "actual/pred", "weight rel", "low-rank rel", "bitdelta rel"],
        alignments: [.left, .right] + objectiveHeaders.map { _ in .right } + [.right, .right, .right, .right, .right, .right])
    for s in report.byType + [report.total] {
        summary.append([s.group, "\(s.matrices)"] + (sensitivity ? [e(s.planObjectiveRelativeError)] : [])
                       + [e(s.planRelativeError), e(s.predictedRelativeError), e(s.actualOverPredicted), e(s.planRelativeWeightError),
                          e(sensitivity ? s.lowRankObjectiveRelativeError : s.lowRankRelativeError),
                          e(sensitivity ? s.bitDeltaObjectiveRelativeError : s.bitDeltaRelativeError)])
    }
    let notes = "predicted in the \(report.objective.rawValue) objective" + (sensitivity ? "; low-rank and bitdelta in the \(objectiveName) objective" : "")
    return [("per matrix (\(report.strategy); \(notes))", perMatrix), ("by layer type", summary)]
}
