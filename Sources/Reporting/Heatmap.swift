import Foundation

/// One panel of a figure: a grid of coloured cells under rotated column labels, row labels on
/// the left, and a colour bar with its scale on the right. ``HeatmapFigure`` puts panels side
/// by side in one SVG document.
///
/// Each cell is an SVG `rect` of class `cell` carrying its value (`data-value`, empty when
/// missing) and a hover title, so that tools and tests can read a picture back.
public struct Heatmap: Sendable {
    public struct Cell: Sendable {
        public var row: Int
        public var column: Int
        /// How many columns the cell covers from `column` (a row outside the grid's columns
        /// spans them all).
        public var span: Int
        /// nil draws the cell grey, explained in the legend by ``Heatmap/missingLabel``.
        public var value: Double?
        /// Shown on hover (an SVG `title`).
        public var tooltip: String

        public init(row: Int, column: Int, span: Int = 1, value: Double?, tooltip: String) {
            self.row = row
            self.column = column
            self.span = span
            self.value = value
            self.tooltip = tooltip
        }
    }

    /// How values map to the colour scale: linearly, or linearly in log₁₀ (positive ranges only).
    public enum Scale: Sendable, Equatable {
        case linear(ClosedRange<Double>)
        case logarithmic(ClosedRange<Double>)
    }

    public static let missingColor = "#c8c8c8"

    public var title: String
    public var rowLabels: [String]
    public var columnLabels: [String]
    public var cells: [Cell] = []
    public var colors: ColorScale
    public var scale: Scale
    public var legendTitle: String
    /// The legend's words for grey (missing) cells; nil when there are none to explain.
    public var missingLabel: String?
    /// When set, drawn in the grid's place instead of cells (a panel with nothing to show says why).
    public var message: String?
    public var cellWidth = 30.0

    public init(title: String, rowLabels: [String], columnLabels: [String], colors: ColorScale, scale: Scale,
                legendTitle: String) {
        self.title = title
        self.rowLabels = rowLabels
        self.columnLabels = columnLabels
        self.colors = colors
        self.scale = scale
        self.legendTitle = legendTitle
    }

    /// Where `value` falls on the colour scale, in [0, 1] (clamped; non-positive values sit at 0
    /// on a log scale).
    public func position(of value: Double) -> Double {
        let (a, b, v): (Double, Double, Double)
        switch scale {
        case let .linear(r): (a, b, v) = (r.lowerBound, r.upperBound, value)
        case let .logarithmic(r): (a, b, v) = (log10(r.lowerBound), log10(r.upperBound), value > 0 ? log10(value) : -.infinity)
        }
        guard b > a else { return 0 }
        return min(max((v - a) / (b - a), 0), 1)
    }

    /// The fill of a cell of value `value` (grey when nil).
    public func fill(_ value: Double?) -> String { value.map { colors.color(at: position(of: $0)).hex } ?? Self.missingColor }

    // MARK: Layout

    static let charWidth = 6.5, labelFont = 11.0, rowLabelSpacing = 11.0
    static let titleHeight = 22.0, barWidth = 14.0, legendGap = 16.0, tickLabelWidth = 44.0

    var cellHeight: Double { rowLabels.isEmpty ? 22 : min(max(360 / Double(rowLabels.count), 8), 22) }
    var rowLabelWidth: Double { Double(rowLabels.map(\.count).max() ?? 0) * Self.charWidth + 10 }
    /// Vertical room of the column labels, written at 45°.
    var columnLabelHeight: Double { Double(columnLabels.map(\.count).max() ?? 0) * Self.charWidth * 0.7072 + 10 }
    var gridWidth: Double { Double(max(columnLabels.count, 1)) * cellWidth }
    var gridHeight: Double { Double(rowLabels.count) * cellHeight }
    var messageLines: [String] { message.map { Self.wrap($0, width: max(Int(gridWidth / Self.charWidth) - 2, 24)) } ?? [] }
    var barHeight: Double { max(120, min(gridHeight, 260)) }
    var bodyHeight: Double {
        message != nil ? max(gridHeight, Double(messageLines.count) * 16 + 20)
            : max(gridHeight, barHeight + (missingLabel == nil ? 0 : 30))
    }
    var legendWidth: Double {
        if message != nil { return 0 }
        let missing = missingLabel.map { Double($0.count) * Self.charWidth + Self.barWidth + 6 } ?? 0
        return Self.legendGap + max(Self.barWidth + 6 + Self.tickLabelWidth + 18, missing)
    }
    /// How far the last column's slanted label reaches past the grid's right edge.
    var labelOverhang: Double {
        columnLabels.enumerated().map { i, label in
            (Double(i) + 0.5) * cellWidth + Double(label.count) * Self.charWidth * 0.7072 + 4 - gridWidth
        }.max() ?? 0
    }

    /// The panel's size in SVG units.
    public var size: (width: Double, height: Double) {
        let messageWidth = message == nil ? 0 : max(gridWidth, Double(messageLines.map(\.count).max() ?? 0) * Self.charWidth + 16)
        let right = max(gridWidth + legendWidth, gridWidth + max(labelOverhang, 0), messageWidth, Double(title.count) * 7.5 - rowLabelWidth)
        return (rowLabelWidth + right + 8, Self.titleHeight + columnLabelHeight + bodyHeight + 8)
    }

    /// The panel's elements with its top-left corner at (`x`, `y`); `id` names its gradient.
    func body(x: Double, y: Double, id: String) -> String {
        let f = SVG.number
        let gridX = x + rowLabelWidth, gridY = y + Self.titleHeight + columnLabelHeight
        var out = SVG.text(title, x: x, y: y + 14, size: 13, extra: "font-weight=\"bold\"")
        for (i, label) in columnLabels.enumerated() {
            let cx = gridX + (Double(i) + 0.5) * cellWidth + 3, cy = gridY - 5
            out += SVG.text(label, x: cx, y: cy, size: Self.labelFont, extra: "transform=\"rotate(-45 \(f(cx)) \(f(cy)))\"")
        }
        var lastLabel = -Double.infinity
        for (i, label) in rowLabels.enumerated() {
            let cy = gridY + (Double(i) + 0.5) * cellHeight
            guard cy - lastLabel >= Self.rowLabelSpacing else { continue }
            out += SVG.text(label, x: gridX - 6, y: cy + 4, anchor: "end", size: Self.labelFont)
            lastLabel = cy
        }
        if message != nil {
            out += "<rect x=\"\(f(gridX))\" y=\"\(f(gridY))\" width=\"\(f(gridWidth))\" height=\"\(f(bodyHeight))\" fill=\"#f4f4f4\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n"
            let top = gridY + bodyHeight / 2 - Double(messageLines.count - 1) * 8
            for (i, line) in messageLines.enumerated() {
                out += SVG.text(line, x: gridX + gridWidth / 2, y: top + Double(i) * 16 + 4, anchor: "middle", extra: "fill=\"#444\"")
            }
            return out
        }
        out += "<rect x=\"\(f(gridX))\" y=\"\(f(gridY))\" width=\"\(f(gridWidth))\" height=\"\(f(gridHeight))\" fill=\"none\" stroke=\"#ccc\"/>\n"
        for c in cells {
            let value = c.value.map { String(format: "%.6g", $0) } ?? ""
            out += "<rect class=\"cell\" x=\"\(f(gridX + Double(c.column) * cellWidth))\" y=\"\(f(gridY + Double(c.row) * cellHeight))\" "
                + "width=\"\(f(Double(c.span) * cellWidth))\" height=\"\(f(cellHeight))\" fill=\"\(fill(c.value))\" stroke=\"white\" "
                + "stroke-width=\"1\" data-value=\"\(value)\"><title>\(SVG.escape(c.tooltip))</title></rect>\n"
        }
        out += legend(x: gridX + gridWidth + Self.legendGap, y: gridY, id: id)
        return out
    }

    /// The colour bar (t = 0 at the bottom) with ticks, its title, and the missing swatch.
    private func legend(x: Double, y: Double, id: String) -> String {
        let f = SVG.number, h = barHeight, w = Self.barWidth
        var out = "<defs><linearGradient id=\"\(id)\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
        for (i, stop) in colors.stops.enumerated() {
            out += "<stop offset=\"\(String(format: "%.4f", Double(i) / Double(colors.stops.count - 1)))\" stop-color=\"\(stop.hex)\"/>"
        }
        out += "</linearGradient></defs>\n"
        out += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(h))\" fill=\"url(#\(id))\" stroke=\"#666\" stroke-width=\"0.5\"/>\n"
        let ticks: [(t: Double, label: String)]
        switch scale {
        case let .linear(r):
            ticks = Axis.ticks(r.lowerBound, r.upperBound, log: false).map { (position(of: $0), Axis.label($0, log: false)) }
        case let .logarithmic(r):
            ticks = Axis.logTicks(r.lowerBound, r.upperBound).map { (position(of: $0.value), $0.label) }
        }
        for tick in ticks {
            let ty = y + h - tick.t * h
            out += "<line x1=\"\(f(x + w))\" y1=\"\(f(ty))\" x2=\"\(f(x + w + 4))\" y2=\"\(f(ty))\" stroke=\"#333\"/>\n"
            out += SVG.text(tick.label, x: x + w + 6, y: ty + 4, size: Self.labelFont)
        }
        let tx = x + w + 6 + Self.tickLabelWidth + 8, ty = y + h / 2
        out += SVG.text(legendTitle, x: tx, y: ty, anchor: "middle", size: Self.labelFont,
                        extra: "transform=\"rotate(90 \(f(tx)) \(f(ty)))\"")
        if let missingLabel {
            out += "<rect x=\"\(f(x))\" y=\"\(f(y + h + 14))\" width=\"\(f(w))\" height=\"\(f(w))\" fill=\"\(Self.missingColor)\"/>\n"
            out += SVG.text(missingLabel, x: x + w + 6, y: y + h + 25, size: Self.labelFont)
        }
        return out
    }

    /// Greedy word wrap to lines of at most `width` characters (longer words stand alone).
    static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty, line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        return line.isEmpty ? lines : lines + [line]
    }
}

/// Panels side by side under a title and lines of subtitle, as one SVG document.
public struct HeatmapFigure: Sendable {
    public var title: String
    public var subtitle: [String]
    public var panels: [Heatmap]

    public init(title: String, subtitle: [String] = [], panels: [Heatmap]) {
        self.title = title
        self.subtitle = subtitle
        self.panels = panels
    }

    static let margin = 20.0, gap = 28.0

    var headerHeight: Double { 46 + 16 * Double(subtitle.count) }

    /// The document's size in SVG units (= pixels when rendered by `rsvg-convert`).
    public var size: (width: Double, height: Double) {
        let panelsWidth = panels.map(\.size.width).reduce(0, +) + Self.gap * Double(max(panels.count - 1, 0))
        let textWidth = max(Double(title.count) * 9, Double(subtitle.map(\.count).max() ?? 0) * 6.8)
        let width = 2 * Self.margin + max(panelsWidth, textWidth)
        return (width.rounded(.up), (headerHeight + (panels.map(\.size.height).max() ?? 0) + Self.margin).rounded(.up))
    }

    public func svg() -> String {
        let (width, height) = size
        var out = SVG.text(title, x: Self.margin, y: 28, size: 16, extra: "font-weight=\"bold\"")
        for (i, line) in subtitle.enumerated() {
            out += SVG.text(line, x: Self.margin, y: 48 + 16 * Double(i), extra: "fill=\"#444\"")
        }
        var x = Self.margin
        for (i, panel) in panels.enumerated() {
            out += panel.body(x: x, y: headerHeight, id: "scale\(i)")
            x += panel.size.width + Self.gap
        }
        return SVG.document(width: width, height: height, body: out)
    }
}
