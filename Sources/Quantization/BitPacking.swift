/// Dense little-endian packing of k-bit codes (k = 1…8) into `UInt32` words, row by row.
///
/// Layout (byte-exact, what the artifact stores):
/// - each row starts on a fresh word and takes ``wordsPerRow(columns:bits:)`` = ⌈columns·k/32⌉
///   words; the rows follow each other;
/// - code i of a row occupies bits `[i·k mod 32, i·k mod 32 + k)` of the row's word ⌊i·k/32⌋,
///   least significant bit first; a code that does not fit straddles into the next word, its low
///   bits in the earlier word (codes do straddle when 32 is not a multiple of k: k = 3, 5, 6, 7);
/// - unused high bits of a row's last word are zero;
/// - written to disk, each word is little-endian (``bytes(of:)``).
///
/// O(rows·columns).
public enum BitPacking {
    public static func wordsPerRow(columns: Int, bits: Int) -> Int { (columns * bits + 31) / 32 }

    /// Packs row-major `codes` (`rows·columns` of them, each < 2^bits).
    public static func pack(_ codes: [UInt8], rows: Int, columns: Int, bits: Int) -> [UInt32] {
        precondition((1...8).contains(bits), "bit packing needs 1…8 bits, got \(bits)")
        precondition(codes.count == rows * columns, "\(rows)×\(columns) codes needed, got \(codes.count)")
        let perRow = wordsPerRow(columns: columns, bits: bits)
        var words = [UInt32](repeating: 0, count: rows * perRow)
        let limit = UInt32(1) << UInt32(bits)
        for r in 0..<rows {
            let base = r * perRow
            for i in 0..<columns {
                let code = UInt32(codes[r * columns + i])
                precondition(code < limit, "code \(code) does not fit in \(bits) bits")
                let bit = i * bits, word = base + bit / 32, shift = UInt32(bit % 32)
                words[word] |= code << shift
                if shift + UInt32(bits) > 32 { words[word + 1] |= code >> (32 - shift) }
            }
        }
        return words
    }

    /// The inverse of ``pack(_:rows:columns:bits:)``.
    public static func unpack(_ words: [UInt32], rows: Int, columns: Int, bits: Int) -> [UInt8] {
        precondition((1...8).contains(bits), "bit packing needs 1…8 bits, got \(bits)")
        let perRow = wordsPerRow(columns: columns, bits: bits)
        precondition(words.count == rows * perRow, "\(rows) rows of \(perRow) words needed, got \(words.count)")
        let mask = (UInt32(1) << UInt32(bits)) - 1
        var codes = [UInt8](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            let base = r * perRow
            for i in 0..<columns {
                let bit = i * bits, word = base + bit / 32, shift = UInt32(bit % 32)
                var value = words[word] >> shift
                if shift + UInt32(bits) > 32 { value |= words[word + 1] << (32 - shift) }
                codes[r * columns + i] = UInt8(value & mask)
            }
        }
        return codes
    }

    /// The words as little-endian bytes (4 per word), the on-disk form.
    public static func bytes(of words: [UInt32]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(words.count * 4)
        for w in words { for b in 0..<4 { out.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(b)))) } }
        return out
    }
}
