import Foundation

/// A line chart written as a standalone SVG document: series of (x, y) points on linear or
/// logarithmic axes, with ticks, grid, axis labels, a title and a legend.
public struct LinePlot: Sendable {
    public struct Series: Sendable {
        public var label: String
        public var points: [(x: Double, y: Double)]
        /// CSS colour; nil picks from the palette by legend position.
        public var color: String?
        public var width: Double
        public var opacity: Double
        /// Series with `inLegend == false` share the colour of a labelled one and stay out of the legend.
        public var inLegend: Bool
        public var marker: Marker
        /// A point to mark with a ring (the knee of the curve, ``Knee``), drawn when visible.
        public var highlight: (x: Double, y: Double)?
        /// A second, smaller line under the label in the legend (what the highlight is, say).
        public var note: String?

        public init(label: String, points: [(x: Double, y: Double)], color: String? = nil, width: Double = 2,
                    opacity: Double = 1, inLegend: Bool = true, marker: Marker = .none,
                    highlight: (x: Double, y: Double)? = nil, note: String? = nil) {
            self.label = label
            self.points = points
            self.color = color
            self.width = width
            self.opacity = opacity
            self.inLegend = inLegend
            self.marker = marker
            self.highlight = highlight
            self.note = note
        }
    }

    /// The symbol drawn at each point of a series (and in its legend entry).
    public enum Marker: Sendable, CaseIterable {
        case none, circle, square, diamond, triangle
    }

    public static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var logX: Bool
    public var logY: Bool
    public var series: [Series] = []
    /// Ticks of the x axis at these data values with these labels, instead of automatic ones.
    public var xTicks: [(value: Double, label: String)]?
    /// What a ring around a highlighted point means, for the legend, and a smaller line under it.
    public var highlightLabel = "highlighted point"
    public var highlightNote: String?
    public var width: Double = 860
    public var height: Double = 520

    public init(title: String, xLabel: String, yLabel: String, logX: Bool = false, logY: Bool = false) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logX = logX
        self.logY = logY
    }

    /// The SVG document. Points that a log axis cannot show (≤ 0) and non-finite ones are left out.
    /// Highlighted points are ringed in their series' colour; the legend then explains the ring
    /// with `highlightLabel`.
    public func svg() -> String {
        let left = 78.0, right = 190.0, top = 48.0, bottom = 62.0
        let plotW = width - left - right, plotH = height - top - bottom
        func tx(_ x: Double) -> Double { logX ? log10(x) : x }
        func ty(_ y: Double) -> Double { logY ? log10(y) : y }
        let visible = series.map { s in
            s.points.filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) && (!logY || $0.y > 0) }
        }
        let xs = visible.flatMap { $0.map { tx($0.x) } }, ys = visible.flatMap { $0.map { ty($0.y) } }
        var (x0, x1) = (xs.min() ?? 0, xs.max() ?? 1), (y0, y1) = (ys.min() ?? 0, ys.max() ?? 1)
        if x1 - x0 < 1e-12 { x0 -= 0.5; x1 += 0.5 }
        if y1 - y0 < 1e-12 { y0 -= 0.5; y1 += 0.5 }
        if logY { (y0, y1) = Axis.logBounds(y0, y1) } else { let pad = 0.05 * (y1 - y0); y0 -= pad; y1 += pad }
        if logX && xTicks == nil { x0 = floor(x0); x1 = ceil(x1) } else { let pad = 0.05 * (x1 - x0); x0 -= pad; x1 += pad }
        func px(_ x: Double) -> Double { left + (tx(x) - x0) / (x1 - x0) * plotW }
        func py(_ y: Double) -> Double { top + plotH - (ty(y) - y0) / (y1 - y0) * plotH }

        var out = SVG.text(title, x: left + plotW / 2, y: 28, anchor: "middle", size: 16, extra: "font-weight=\"bold\"")
        // Grid and ticks; an x label closer than 40 units to the previous one is left out.
        var lastXLabel = -Double.infinity
        let xTickList = xTicks.map { $0.map { (tx($0.value), $0.label) } }
            ?? Axis.ticks(x0, x1, log: logX).map { ($0, Axis.label($0, log: logX)) }
        let yTickList = logY ? Axis.logTicks(pow(10, y0), pow(10, y1)).map { (log10($0.value), $0.label) }
            : Axis.ticks(y0, y1, log: false).map { ($0, Axis.label($0, log: false)) }
        for (value, label, isX) in xTickList.map({ ($0.0, $0.1, true) }) + yTickList.map({ ($0.0, $0.1, false) }) {
            if isX {
                let x = left + (value - x0) / (x1 - x0) * plotW
                out += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotH))\" stroke=\"#e6e6e6\"/>\n"
                if x - lastXLabel >= 40 {
                    out += SVG.text(label, x: x, y: top + plotH + 18, anchor: "middle")
                    lastXLabel = x
                }
            } else {
                let y = top + plotH - (value - y0) / (y1 - y0) * plotH
                out += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y))\" stroke=\"#e6e6e6\"/>\n"
                out += SVG.text(label, x: left - 8, y: y + 4, anchor: "end")
            }
        }
        out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#333\"/>\n"
        out += SVG.text(xLabel, x: left + plotW / 2, y: height - 16, anchor: "middle", size: 13)
        out += SVG.text(yLabel, x: 0, y: 0, anchor: "middle", size: 13, extra: "transform=\"translate(20 \(f(top + plotH / 2))) rotate(-90)\"")
        // Series, legend.
        var legendIndex = 0, legendY = top + 8, hasHighlight = false
        for (s, points) in zip(series, visible) where !points.isEmpty {
            let color = s.color ?? Self.palette[legendIndex % Self.palette.count]
            let path = points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(s.width)\" stroke-opacity=\"\(s.opacity)\" points=\"\(path)\"/>\n"
            for p in points { out += symbol(s.marker, px(p.x), py(p.y), color) }
            if s.inLegend {
                let lx = left + plotW + 16
                out += "<line x1=\"\(f(lx))\" y1=\"\(f(legendY))\" x2=\"\(f(lx + 24))\" y2=\"\(f(legendY))\" stroke=\"\(color)\" stroke-width=\"3\"/>\n"
                out += symbol(s.marker, lx + 12, legendY, color)
                out += SVG.text(s.label, x: lx + 30, y: legendY + 4)
                if let note = s.note {
                    out += SVG.text(note, x: lx + 30, y: legendY + 17, size: 10, extra: "fill=\"#555\"")
                    legendY += 13
                }
                legendY += 20
                legendIndex += 1
            }
            if let h = s.highlight, h.x.isFinite, h.y.isFinite, !(logX && h.x <= 0), !(logY && h.y <= 0) {
                out += ring(px(h.x), py(h.y), color)
                hasHighlight = true
            }
        }
        if hasHighlight {
            let lx = left + plotW + 16
            out += ring(lx + 12, legendY + 4, "#333")
            out += SVG.text(highlightLabel, x: lx + 30, y: legendY + 8)
            if let highlightNote { out += SVG.text(highlightNote, x: lx + 30, y: legendY + 21, size: 10, extra: "fill=\"#555\"") }
        }
        return SVG.document(width: width, height: height, body: out)
    }

    private func f(_ x: Double) -> String { SVG.number(x) }

    private func ring(_ x: Double, _ y: Double, _ color: String) -> String {
        "<circle cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"9\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
    }

    private func symbol(_ marker: Marker, _ x: Double, _ y: Double, _ color: String) -> String {
        let style = "fill=\"\(color)\" stroke=\"white\" stroke-width=\"1\""
        switch marker {
        case .none: return ""
        case .circle: return "<circle cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"4.5\" \(style)/>\n"
        case .square: return "<rect x=\"\(f(x - 4))\" y=\"\(f(y - 4))\" width=\"8\" height=\"8\" \(style)/>\n"
        case .diamond:
            return "<polygon points=\"\(f(x)),\(f(y - 5.5)) \(f(x + 5.5)),\(f(y)) \(f(x)),\(f(y + 5.5)) \(f(x - 5.5)),\(f(y))\" \(style)/>\n"
        case .triangle:
            return "<polygon points=\"\(f(x)),\(f(y - 5.5)) \(f(x + 5)),\(f(y + 4)) \(f(x - 5)),\(f(y + 4))\" \(style)/>\n"
        }
    }
}
