import Foundation

extension Comparison {
    /// An SVG line plot of predicted relative error (log₁₀ y axis) against achieved α (log₂ x axis),
    /// one line per strategy, with grid, decade ticks, axis labels and a legend. Hand-written SVG 1.1,
    /// 760 × 480 user units. Points with a non-positive error are left out (no log).
    public func svg() -> String {
        let width = 760.0, height = 480.0
        let left = 84.0, right = 190.0, top = 48.0, bottom = 64.0
        let plotW = width - left - right, plotH = height - top - bottom
        let points = rows.filter { $0.alpha > 0 && $0.predictedRelativeError > 0 && $0.predictedRelativeError.isFinite }
        let strategies = rows.map(\.strategy).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
        let markers = ["circle", "square", "diamond", "triangle"]

        // Axis ranges: x in log2(α) padded by a quarter octave, y in whole decades.
        let xs = points.map { log2($0.alpha) }, ys = points.map { log10($0.predictedRelativeError) }
        var xMin = (xs.min() ?? -5) - 0.25, xMax = (xs.max() ?? -3) + 0.25
        if xMax - xMin < 1 { let mid = (xMin + xMax) / 2; xMin = mid - 0.5; xMax = mid + 0.5 }
        var yMin = (ys.min() ?? -3).rounded(.down), yMax = (ys.max() ?? -1).rounded(.up)
        if yMax <= yMin { yMin -= 1; yMax += 1 }
        func px(_ x: Double) -> Double { left + (x - xMin) / (xMax - xMin) * plotW }
        func py(_ y: Double) -> Double { top + (yMax - y) / (yMax - yMin) * plotH }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }

        var out: [String] = []
        out.append(##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(Int(width))" height="\##(Int(height))" viewBox="0 0 \##(Int(width)) \##(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="13">"##)
        out.append(##"<rect width="100%" height="100%" fill="white"/>"##)
        out.append(##"<text x="\##(f(left + plotW / 2))" y="28" text-anchor="middle" font-size="16" font-weight="bold">Predicted relative error vs budget — \##(esc(title))</text>"##)
        // Grid and y ticks: decades with labels, minor ticks at 2..9.
        var decade = Int(yMin)
        while Double(decade) <= yMax {
            let y = py(Double(decade))
            out.append(##"<line x1="\##(f(left))" y1="\##(f(y))" x2="\##(f(left + plotW))" y2="\##(f(y))" stroke="#d0d0d0" stroke-width="1"/>"##)
            out.append(##"<text x="\##(f(left - 8))" y="\##(f(y + 4))" text-anchor="end">1e\##(decade)</text>"##)
            if Double(decade) < yMax {
                for m in 2...9 {
                    let ym = py(Double(decade) + log10(Double(m)))
                    out.append(##"<line x1="\##(f(left))" y1="\##(f(ym))" x2="\##(f(left + plotW))" y2="\##(f(ym))" stroke="#efefef" stroke-width="1"/>"##)
                }
            }
            decade += 1
        }
        // x ticks at the budgets' α (labelled 1/n) or, if none, at whole octaves.
        var ticks = Array(Set(points.map { log2($0.alpha) })).sorted()
        if ticks.isEmpty { ticks = stride(from: xMin.rounded(.up), through: xMax, by: 1).map { $0 } }
        var lastLabelX = -Double.infinity
        for t in ticks {
            let x = px(t)
            out.append(##"<line x1="\##(f(x))" y1="\##(f(top))" x2="\##(f(x))" y2="\##(f(top + plotH))" stroke="#e4e4e4" stroke-width="1"/>"##)
            out.append(##"<line x1="\##(f(x))" y1="\##(f(top + plotH))" x2="\##(f(x))" y2="\##(f(top + plotH + 5))" stroke="black"/>"##)
            if x - lastLabelX > 44 {
                out.append(##"<text x="\##(f(x))" y="\##(f(top + plotH + 20))" text-anchor="middle">\##(esc(formatAlpha(exp2(t))))</text>"##)
                lastLabelX = x
            }
        }
        out.append(##"<rect x="\##(f(left))" y="\##(f(top))" width="\##(f(plotW))" height="\##(f(plotH))" fill="none" stroke="black" stroke-width="1.2"/>"##)
        out.append(##"<text x="\##(f(left + plotW / 2))" y="\##(f(height - 18))" text-anchor="middle">budget: achieved α (storage / F16 delta size, \##(accounting.rawValue) accounting, log scale)</text>"##)
        out.append(##"<text transform="translate(22 \##(f(top + plotH / 2))) rotate(-90)" text-anchor="middle">predicted relative error ‖(ΔW−ΔŴ)X‖² / ‖ΔW X‖² (log scale)</text>"##)

        func marker(_ kind: String, _ x: Double, _ y: Double, _ color: String) -> String {
            switch kind {
            case "square": ##"<rect x="\##(f(x - 4))" y="\##(f(y - 4))" width="8" height="8" fill="\##(color)" stroke="white" stroke-width="1"/>"##
            case "diamond": ##"<polygon points="\##(f(x)),\##(f(y - 5.5)) \##(f(x + 5.5)),\##(f(y)) \##(f(x)),\##(f(y + 5.5)) \##(f(x - 5.5)),\##(f(y))" fill="\##(color)" stroke="white" stroke-width="1"/>"##
            case "triangle": ##"<polygon points="\##(f(x)),\##(f(y - 5.5)) \##(f(x + 5)),\##(f(y + 4)) \##(f(x - 5)),\##(f(y + 4))" fill="\##(color)" stroke="white" stroke-width="1"/>"##
            default: ##"<circle cx="\##(f(x))" cy="\##(f(y))" r="4.5" fill="\##(color)" stroke="white" stroke-width="1"/>"##
            }
        }
        for (i, s) in strategies.enumerated() {
            let color = palette[i % palette.count], kind = markers[i % markers.count]
            let line = points.filter { $0.strategy == s }.sorted { $0.alpha < $1.alpha }
                .map { (px(log2($0.alpha)), py(log10($0.predictedRelativeError))) }
            if line.count > 1 {
                out.append(##"<polyline points="\##(line.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " "))" fill="none" stroke="\##(color)" stroke-width="2.2" stroke-linejoin="round"/>"##)
            }
            for (x, y) in line { out.append(marker(kind, x, y, color)) }
            // Legend entry.
            let ly = top + 14 + Double(i) * 22, lx = left + plotW + 18
            out.append(##"<line x1="\##(f(lx))" y1="\##(f(ly))" x2="\##(f(lx + 26))" y2="\##(f(ly))" stroke="\##(color)" stroke-width="2.2"/>"##)
            out.append(marker(kind, lx + 13, ly, color))
            out.append(##"<text x="\##(f(lx + 34))" y="\##(f(ly + 4.5))">\##(esc(s))</text>"##)
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}
