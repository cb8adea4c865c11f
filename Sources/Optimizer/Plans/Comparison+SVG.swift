import Foundation
import Reporting

extension Comparison {
    /// Predicted relative error (log y axis) against achieved α (log x axis, ticks at the budgets,
    /// labelled as given), one line per strategy with its own marker. Points with a non-positive
    /// error are left out (no log). Each line's knee (``Knee``: the point farthest from the chord
    /// between its ends on these log–log axes, where more budget starts to buy less) is ringed
    /// and its α given in the legend; a line without a bend of at least 2% of its chord has none.
    public func plot() -> LinePlot {
        var plot = LinePlot(
            title: "Predicted relative error vs budget — \(title)",
            xLabel: "budget: achieved α (storage / F16 delta size, \(accounting.rawValue) accounting)",
            yLabel: "predicted ‖(ΔW−ΔŴ)X‖² / ‖ΔW X‖²", logX: true, logY: true)
        plot.highlightLabel = "knee"
        plot.highlightNote = "farthest from the chord"
        let points = rows.filter { $0.alpha > 0 && $0.predictedRelativeError > 0 && $0.predictedRelativeError.isFinite }
        let strategies = rows.map(\.strategy).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let markers = LinePlot.Marker.allCases.filter { $0 != .none }
        for (i, s) in strategies.enumerated() {
            let own = points.filter { $0.strategy == s }.sorted { $0.alpha < $1.alpha }
            let line = own.map { (x: $0.alpha, y: $0.predictedRelativeError) }
            let knee = Knee.index(of: line, logX: true, logY: true)
            plot.series.append(.init(label: s, points: line, width: 2.2, marker: markers[i % markers.count],
                                     highlight: knee.map { line[$0] }, note: knee.map { "knee at budget \(own[$0].budget)" }))
        }
        // Ticks at the budgets asked for (nominal α = budget bits / dense bits), labelled as given.
        var ticks: [String: Double] = [:]
        for r in points where r.storageBits > 0 { ticks[r.budget] = Double(r.budgetBits) * r.alpha / Double(r.storageBits) }
        if !ticks.isEmpty { plot.xTicks = ticks.sorted { $0.value < $1.value }.map { ($0.value, $0.key) } }
        return plot
    }

    /// ``plot()`` as an SVG document.
    public func svg() -> String { plot().svg() }
}
