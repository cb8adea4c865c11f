/// What `deltaplan inspect` prints: every tensor of a checkpoint sorted by name, and totals.
///
/// Built from headers only (no tensor data is read). Both renderings are deterministic: rows in
/// UTF-8 name order, dtypes in name order.
public struct CheckpointSummary: Sendable, Equatable {
    public struct Row: Sendable, Equatable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let parameters: Int
        public let bytes: Int
        /// Shard file name for a sharded checkpoint, else `nil`.
        public let shard: String?
    }

    public struct DTypeTotal: Sendable, Equatable {
        public let dtype: DType
        public let tensors: Int
        public let parameters: Int
        public let bytes: Int
    }

    /// The path as given to `Checkpoint(at:)`.
    public let path: String
    public let isSharded: Bool
    public let rows: [Row]
    public let parameterCount: Int
    public let byteCount: Int
    /// One entry per dtype present, in dtype-name order.
    public let byDType: [DTypeTotal]

    public init(_ checkpoint: Checkpoint) {
        path = checkpoint.url.path
        if case .sharded = checkpoint.kind { isSharded = true } else { isSharded = false }
        rows = checkpoint.tensors.map {
            Row(name: $0.name, dtype: $0.info.dtype, shape: $0.info.shape,
                parameters: $0.info.elementCount, bytes: $0.info.byteCount, shard: $0.shard)
        }
        parameterCount = rows.reduce(0) { $0 + $1.parameters }
        byteCount = rows.reduce(0) { $0 + $1.bytes }
        var totals: [DType: (tensors: Int, parameters: Int, bytes: Int)] = [:]
        for row in rows {
            let old = totals[row.dtype] ?? (0, 0, 0)
            totals[row.dtype] = (old.tensors + 1, old.parameters + row.parameters, old.bytes + row.bytes)
        }
        byDType = totals.keys.sorted().map {
            DTypeTotal(dtype: $0, tensors: totals[$0]!.tensors, parameters: totals[$0]!.parameters, bytes: totals[$0]!.bytes)
        }
    }

    public var tensorCount: Int { rows.count }

    /// An aligned text table: name and dtype left-aligned, numbers right-aligned with thousands
    /// separators, a SHARD column only for sharded checkpoints, then the totals.
    public func table() -> String {
        var header = ["NAME", "DTYPE", "SHAPE", "PARAMETERS", "BYTES"]
        if isSharded { header.append("SHARD") }
        let rightAligned: Set<Int> = [3, 4]
        var cells: [[String]] = rows.map { row in
            var line = [row.name, row.dtype.rawValue, Self.shapeText(row.shape),
                        Self.grouped(row.parameters), Self.grouped(row.bytes)]
            if isSharded { line.append(row.shard ?? "") }
            return line
        }
        cells.insert(header, at: 0)
        var widths = Array(repeating: 0, count: header.count)
        for line in cells {
            for (column, cell) in line.enumerated() { widths[column] = max(widths[column], cell.count) }
        }
        var out = "\(path)\n\n"
        for line in cells {
            let padded = line.enumerated().map { column, cell in
                let fill = String(repeating: " ", count: widths[column] - cell.count)
                return rightAligned.contains(column) ? fill + cell : cell + fill
            }
            var text = padded.joined(separator: "  ")
            while text.last == " " { text.removeLast() }
            out += text + "\n"
        }
        out += "\n"
        out += "tensors: \(Self.grouped(tensorCount))   parameters: \(Self.grouped(parameterCount))"
            + "   bytes: \(Self.grouped(byteCount)) (\(Self.humanBytes(byteCount)))\n"
        if !byDType.isEmpty {
            let dtypeWidth = byDType.map(\.dtype.rawValue.count).max()!
            let tensorWidth = byDType.map { Self.grouped($0.tensors).count }.max()!
            let byteWidth = byDType.map { Self.grouped($0.bytes).count }.max()!
            out += "by dtype:\n"
            for total in byDType {
                let name = total.dtype.rawValue + String(repeating: " ", count: dtypeWidth - total.dtype.rawValue.count)
                let tensors = Self.grouped(total.tensors)
                let bytes = Self.grouped(total.bytes)
                let noun = total.tensors == 1 ? "tensor " : "tensors"
                out += "  \(name)  \(String(repeating: " ", count: tensorWidth - tensors.count))\(tensors) \(noun)  "
                    + "\(String(repeating: " ", count: byteWidth - bytes.count))\(bytes) bytes (\(Self.humanBytes(total.bytes)))\n"
            }
        }
        return out
    }

    /// Pretty-printed JSON, one tensor per line; keys in a fixed order.
    ///
    /// `{"path", "sharded", "tensors": [{"name", "dtype", "shape", "parameters", "bytes"[, "shard"]}],
    ///   "totals": {"tensors", "parameters", "bytes", "by_dtype": {DTYPE: {"tensors", "parameters", "bytes"}}}}`
    public func json() -> String {
        var out = "{\n"
        out += "  \"path\": \(JSONWriter.quoted(path)),\n"
        out += "  \"sharded\": \(isSharded),\n"
        out += "  \"tensors\": ["
        let tensorLines = rows.map { row in
            var line = "{\"name\": \(JSONWriter.quoted(row.name)), \"dtype\": \"\(row.dtype.rawValue)\", "
                + "\"shape\": [\(row.shape.map(String.init).joined(separator: ", "))], "
                + "\"parameters\": \(row.parameters), \"bytes\": \(row.bytes)"
            if let shard = row.shard { line += ", \"shard\": \(JSONWriter.quoted(shard))" }
            return "    " + line + "}"
        }
        out += tensorLines.isEmpty ? "],\n" : "\n" + tensorLines.joined(separator: ",\n") + "\n  ],\n"
        out += "  \"totals\": {\n"
        out += "    \"tensors\": \(tensorCount),\n"
        out += "    \"parameters\": \(parameterCount),\n"
        out += "    \"bytes\": \(byteCount),\n"
        let dtypeLines = byDType.map {
            "      \"\($0.dtype.rawValue)\": {\"tensors\": \($0.tensors), \"parameters\": \($0.parameters), \"bytes\": \($0.bytes)}"
        }
        out += "    \"by_dtype\": {" + (dtypeLines.isEmpty ? "}\n" : "\n" + dtypeLines.joined(separator: ",\n") + "\n    }\n")
        out += "  }\n}\n"
        return out
    }

    static func shapeText(_ shape: [Int]) -> String {
        "[" + shape.map(String.init).joined(separator: ", ") + "]"
    }

    /// `1234567` → `"1,234,567"`.
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return value < 0 ? "-" + out : out
    }

    /// Bytes in binary units with one decimal (`"13.5 GiB"`); below 1 KiB, plain bytes.
    static func humanBytes(_ value: Int) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        guard value >= 1024 else { return "\(value) B" }
        var scaled = Double(value) / 1024
        var unit = 0
        while scaled >= 1024 && unit < units.count - 1 {
            scaled /= 1024
            unit += 1
        }
        let tenths = Int((scaled * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }
}
