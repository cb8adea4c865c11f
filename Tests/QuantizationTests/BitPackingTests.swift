import LinearAlgebra
import Quantization
import Testing

@Suite struct BitPackingTests {
    @Test(arguments: 1...8)
    func roundTrip(bits: Int) {
        let g = SeededGenerator(seed: UInt64(100 + bits))
        for length in [1, 7, 33, 129] {
            let rows = 3
            let codes = (0..<(rows * length)).map { _ in UInt8(g.uniformInt(below: 1 << bits)) }
            let words = BitPacking.pack(codes, rows: rows, columns: length, bits: bits)
            #expect(words.count == rows * ((length * bits + 31) / 32))
            #expect(BitPacking.unpack(words, rows: rows, columns: length, bits: bits) == codes)
            // Layout, bit by bit: bit b of code i of row r is bit (i·k + b) of the row's stream.
            let perRow = (length * bits + 31) / 32
            for r in 0..<rows {
                for i in 0..<length {
                    for b in 0..<bits {
                        let position = i * bits + b
                        let stored = (words[r * perRow + position / 32] >> UInt32(position % 32)) & 1
                        #expect(stored == UInt32(codes[r * length + i] >> UInt8(b)) & 1)
                    }
                }
                // Padding bits are zero.
                let used = length * bits
                for position in used..<(perRow * 32) {
                    #expect((words[r * perRow + position / 32] >> UInt32(position % 32)) & 1 == 0)
                }
            }
            let bytes = BitPacking.bytes(of: words)
            #expect(bytes.count == 4 * words.count)
            if let first = words.first { #expect(bytes[0] == UInt8(first & 0xff) && bytes[3] == UInt8(first >> 24)) }
        }
    }
}
