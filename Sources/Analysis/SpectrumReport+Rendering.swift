import Foundation
import ModelProfiles
import Reporting

extension SpectrumReport {
    /// The per-matrix table: shape, stored rank, effective rank, energy captured by the top 2 / 34 /
    /// 128 vectors (weight, and activation-weighted when calibrated), and the tail fit.
    public func table() -> TextTable {
        var headers = ["matrix", "type", "shape", "rank", "eff. rank", "top2", "top34", "top128"]
        if !dataFree { headers += ["act top2", "act top34", "act top128"] }
        headers += ["tail p", "fit R²", "‖ΔW‖²", "‖ΔWX‖²"]
        var t = TextTable(headers: headers, alignments: [.left, .left] + Array(repeating: .right, count: headers.count - 2))
        for e in entries {
            var row = [e.name + (e.calibration == .identityMissing ? " (H=I)" : ""), e.type.rawValue, "\(e.rows)×\(e.columns)",
                       "\(e.storedRank)", Format.fixed(e.effectiveRank, decimals: 1),
                       Format.percent(e.energyTop2), Format.percent(e.energyTop34), Format.percent(e.energyTop128)]
            if !dataFree {
                row += [e.activationEnergyTop2, e.activationEnergyTop34, e.activationEnergyTop128].map { $0.map { Format.percent($0) } ?? "-" }
            }
            row += [e.tailExponent.map { Format.fixed($0, decimals: 3) } ?? "-", e.tailRSquared.map { Format.fixed($0, decimals: 3) } ?? "-",
                    Format.significant(e.weightEnergy), Format.significant(e.activationEnergy)]
            t.append(row)
        }
        return t
    }

    /// A line under every table saying what H was.
    public var calibrationNote: String {
        if dataFree { return "data-free store: no calibration, H = I (activation energies are weight energies)" }
        let missing = entries.filter { $0.calibration == .identityMissing }.map(\.name)
        return missing.isEmpty ? "calibrated: H = Σ x xᵀ from the calibration file"
            : "calibrated, except \(missing.count) matrices marked (H=I) that had no calibration entry"
    }

    /// A line over every table saying which error objective the calibration statistics support
    /// and what they are.
    public var objectiveLine: String {
        guard !dataFree, let objective = supportedObjective else {
            return "statistics: none (data-free: the activation error is the weight error)"
        }
        let calibrated = entries.filter { $0.calibration == .gram }
        let statistics = calibrated.map {
            $0.statistics ?? CalibrationStatistics(inputGram: .full, outputGram: .absent, pairedRows: 0)
        }
        func forms(_ label: String, _ form: (CalibrationStatistics) -> GramForm) -> String {
            let counts = Dictionary(grouping: statistics.map(form), by: { $0 }).mapValues(\.count)
            if counts.count == 1, let only = counts.keys.first { return only == .absent ? "no \(label)" : "\(label) \(only.rawValue)" }
            return label + " " + [GramForm.full, .diagonal, .absent].compactMap { f in counts[f].map { "\(f.rawValue) for \($0)" } }
                .joined(separator: ", ")
        }
        var details = ["calibration format \(calibrationFile?.formatVersion ?? 1)", forms("H", \.inputGram), forms("G", \.outputGram)]
        let paired = statistics.filter { $0.pairedRows > 0 }
        if !paired.isEmpty {
            let rows = Set(paired.map(\.pairedRows)).sorted().map(String.init).joined(separator: "/") + " paired rows"
            details.append(paired.count == statistics.count ? rows : rows + " for \(paired.count) of \(statistics.count)")
        }
        if let probe = calibrationFile?.metadata.objective {
            details.append("probes: \(probe.rawValue)" + (calibrationFile?.metadata.probes.map { " × \($0)" } ?? ""))
        }
        return "objective supported by the statistics: \(objective.rawValue) (" + details.joined(separator: "; ") + ")"
    }

    /// Plain text: the objective line, the table, then the calibration note.
    public func text() -> String { objectiveLine + "\n\n" + table().text() + "\n" + calibrationNote + "\n" }

    public func markdown() -> String { objectiveLine + "\n\n" + table().markdown() + "\n_" + calibrationNote + "_\n" }

    /// JSON with every stored singular value, sorted keys.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(self), as: UTF8.self) + "\n"
    }

    /// Normalized spectra σᵢ/σ₁ against the index, log–log: one thin line per matrix coloured by
    /// layer type and, thick, the geometric mean of each type.
    public func plot() -> LinePlot {
        var plot = LinePlot(title: "Delta spectra by layer type (normalized σᵢ / σ₁)", xLabel: "singular index i + 1",
                            yLabel: "σᵢ / σ₁", logX: true, logY: true)
        let types = LayerType.allCases.filter { t in entries.contains { $0.type == t } }
        for (k, type) in types.enumerated() {
            let color = LinePlot.palette[k % LinePlot.palette.count]
            let members = entries.filter { $0.type == type && ($0.singularValues.first ?? 0) > 0 }
            for e in members {
                let s0 = e.singularValues[0]
                plot.series.append(.init(label: e.name, points: e.singularValues.enumerated().map { (Double($0.offset + 1), $0.element / s0) },
                                         color: color, width: 0.8, opacity: 0.25, inLegend: false))
            }
            // Geometric mean over the members, up to the shortest spectrum.
            let length = members.map(\.singularValues.count).min() ?? 0
            let mean: [(x: Double, y: Double)] = (0..<length).map { i in
                var sumOfLogs = 0.0
                for e in members { sumOfLogs += log(max(e.singularValues[i] / e.singularValues[0], 1e-300)) }
                return (Double(i + 1), exp(sumOfLogs / Double(members.count)))
            }
            plot.series.append(.init(label: "\(type.rawValue) (\(members.count), mean)", points: mean, color: color, width: 2.5))
        }
        return plot
    }
}
