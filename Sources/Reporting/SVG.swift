import Foundation

/// The pieces every SVG document of the reports is made of: the document frame, text escaping
/// and coordinates printed to one decimal. One place, so that every picture is written alike.
public enum SVG {
    /// A standalone document of `width` × `height` user units (= CSS pixels: `rsvg-convert`
    /// renders it at that size in pixels), white background, the reports' font, then `body`.
    public static func document(width: Double, height: Double, body: String) -> String {
        """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
        viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        \(body)</svg>

        """
    }

    /// `&`, `<`, `>` and `"` as entities: safe in text and in attribute values.
    public static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// A coordinate to one decimal (`12.3`): deterministic output, small files.
    public static func number(_ x: Double) -> String { String(format: "%.1f", x) }

    /// A `<text>` element; `anchor` is `start`, `middle` or `end`, `extra` further attributes.
    public static func text(_ s: String, x: Double, y: Double, anchor: String = "start", size: Double? = nil,
                            extra: String = "") -> String {
        let font = size.map { " font-size=\"\(number($0))\"" } ?? ""
        let more = extra.isEmpty ? "" : " " + extra
        return "<text x=\"\(number(x))\" y=\"\(number(y))\" text-anchor=\"\(anchor)\"\(font)\(more)>\(escape(s))</text>\n"
    }
}
