import Foundation
import ModelProfiles
import Reporting

extension Plan {
    /// Where each matrix sits in the picture: rows are layers (by index) and matrices outside the
    /// layer stack, columns the matrix kinds within a layer (``MatrixName``).
    public struct Grid: Sendable, Equatable {
        /// `"0"`, `"1"`, … for layers; a matrix without a layer index is a row of its own, labelled by its name.
        public var rows: [String]
        /// Short labels of the kinds (`q_proj`), in the order the plan first lists them.
        public var columns: [String]
        /// Per matrix, in plan order: its row, first column and how many columns it covers
        /// (all of them for a matrix outside the layer stack).
        public var places: [(row: Int, column: Int, span: Int)]

        public static func == (a: Grid, b: Grid) -> Bool {
            a.rows == b.rows && a.columns == b.columns && a.places.elementsEqual(b.places) { $0 == $1 }
        }
    }

    /// The kinds of matrix in a layer in the order the built-in profiles list them (`q_proj`,
    /// `k_proj`, …, `down_proj`, then BERT's `query`, …): a store lists its matrices by name,
    /// and a picture reads better in the model's order.
    public static let profileKindOrder: [String] = {
        let models = (try? ProfileLibrary.builtIn())?.models ?? []
        let kinds = models.flatMap { $0.scaled(by: 1, layers: 1).expandedMatrices().map { MatrixName($0.name).kind } }
        return kinds.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
    }()

    /// The layer × kind grid of the plan's matrices. Layers are sorted by index; matrices without
    /// one go above the layers when the plan lists them before any layer's matrix (embeddings),
    /// below otherwise (`lm_head`). Columns follow `kindOrder`, then the plan's order.
    public func grid(kindOrder: [String] = Plan.profileKindOrder) -> Grid {
        let names = matrices.map { MatrixName($0.name) }
        // One column per template (encoder and decoder layers' `q` are two columns), labelled by
        // its kind unless two templates share one.
        var columns: [(template: String, kind: String)] = []
        for n in names where n.layer != nil && !columns.contains(where: { $0.template == n.template }) {
            columns.append((n.template, n.kind))
        }
        let rank = { (kind: String) in kindOrder.firstIndex(of: kind) ?? kindOrder.count }
        columns = columns.enumerated().sorted { (rank($0.element.kind), $0.offset) < (rank($1.element.kind), $1.offset) }.map(\.element)
        let templates = columns.map(\.template), kinds = columns.map(\.kind)
        let layers = Set(names.compactMap(\.layer)).sorted()
        let firstLayered = names.firstIndex { $0.layer != nil } ?? names.count
        let above = names.indices.filter { names[$0].layer == nil && $0 < firstLayered }
        let below = names.indices.filter { names[$0].layer == nil && $0 > firstLayered }
        let rows = above.map { names[$0].kind } + layers.map(String.init) + below.map { names[$0].kind }
        let columnCount = max(templates.count, 1)
        // Every index looked up below is in the list searched: layers, templates, above and below
        // are made from these names.
        let places = names.indices.map { i -> (row: Int, column: Int, span: Int) in
            if let layer = names[i].layer {
                return (above.count + layers.firstIndex(of: layer)!, templates.firstIndex(of: names[i].template)!, 1)
            }
            if let a = above.firstIndex(of: i) { return (a, 0, columnCount) }
            return (above.count + layers.count + below.firstIndex(of: i)!, 0, columnCount)
        }
        let labels = Set(kinds).count == kinds.count ? MatrixName.shortLabels(kinds) : MatrixName.shortLabels(templates)
        return Grid(rows: rows, columns: templates.isEmpty ? [""] : labels, places: places)
    }

    /// Bits per delta parameter of each matrix: storageBits / (h_out · h_in).
    public var bitsPerParameter: [Double] { matrices.map { Double($0.storageBits) / Double($0.shape[0] * $0.shape[1]) } }

    /// Two heatmaps of the plan on its layer × kind ``grid``: bits per delta parameter (viridis,
    /// 0 to the largest, rounded up to a whole bit), and predicted relative error per matrix
    /// (log scale from the smallest to the largest positive error). A shape-only plan predicts nothing, and its second panel
    /// says so; under the paired objective an error can be ≤ 0 (a sample estimate), drawn grey.
    public func picture() -> HeatmapFigure {
        let grid = grid(), bpp = bitsPerParameter
        var bitsPanel = Heatmap(title: "bits per delta parameter", rowLabels: grid.rows, columnLabels: grid.columns,
                                colors: .viridis, scale: .linear(0...max(1, (bpp.max() ?? 1).rounded(.up))),
                                legendTitle: "bits / parameter")
        var errorPanel = Heatmap(title: "predicted relative error", rowLabels: grid.rows, columnLabels: grid.columns,
                                 colors: .magmaReversed, scale: .logarithmic(1e-3...1), legendTitle: "error / ‖ΔW X‖²")
        for (i, m) in matrices.enumerated() {
            let place = grid.places[i]
            let mix = (m.dense ? "kept dense (F16)" : m.segments.isEmpty ? "dropped" : m.segments.map { "\($0.bits)×\($0.count)" }.joined(separator: " + "))
                + (m.pin.map { ", pinned '\($0)'" } ?? "")
            bitsPanel.cells.append(.init(row: place.row, column: place.column, span: place.span, value: bpp[i],
                                         tooltip: "\(m.name): \(mix), \(String(format: "%.4f", bpp[i])) bits/param"))
            let error = m.predictedRelativeError.flatMap { $0 > 0 ? $0 : nil }
            errorPanel.cells.append(.init(row: place.row, column: place.column, span: place.span, value: error,
                                          tooltip: "\(m.name): relative error \(m.predictedRelativeError.map { String(format: "%.4e", $0) } ?? "none")"))
        }
        let errors = matrices.compactMap(\.predictedRelativeError)
        let positive = errors.filter { $0 > 0 }
        if errors.isEmpty {
            errorPanel.message = "no predicted errors: this plan was made from shapes alone, without an error model (plan from an analysis store to get them)"
        } else {
            if let low = positive.min(), let high = positive.max() {
                errorPanel.scale = .logarithmic(high > low ? low...high : low / 2...high * 2)
            }
            if positive.count < matrices.count {
                // Non-positive: a matrix kept dense (0: its F16 rounding is not predicted), or a
                // paired objective's sample estimate.
                let kept = matrices.contains { $0.dense }
                let estimates = matrices.contains { !$0.dense && ($0.predictedRelativeError ?? 1) <= 0 }
                errorPanel.missingLabel = errors.count < matrices.count ? "no prediction"
                    : kept && estimates ? "0 (kept dense) or ≤ 0 (a sample estimate)" : kept ? "0 (kept dense)" : "≤ 0 (a sample estimate)"
            }
        }
        var title = "Plan: \(strategy.name)\(strategy.preset.map { ":" + $0 } ?? "") at \(budget.given), \(source.name)"
        if title.count > 90 { title = String(title.prefix(89)) + "…" }
        var line = String(format: "α = %.5f (1/%.1f), %.3f bits per parameter, %ld matrices, scope %@, %@ accounting",
                          totals.alpha, 1 / max(totals.alpha, 1e-300), totals.bitsPerParameter, matrices.count, scope.rawValue,
                          accounting.rawValue)
        if let r = totals.predictedRelativeError { line += String(format: "; predicted relative error %.3e", r) }
        if let objective { line += " (\(objective.rawValue))" }
        return HeatmapFigure(title: title, subtitle: [line], panels: [bitsPanel, errorPanel])
    }

    /// ``picture()`` as an SVG document.
    public func svg() -> String { picture().svg() }
}
