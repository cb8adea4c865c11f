/// A fixed precision mix, applied the same way to every matrix: consecutive segments of singular
/// vectors (largest singular values first), each at one bit-width. Loaded from
/// `Profiles/presets/NAME.json`.
///
/// Example, the paper's default ("8+3+2"): `[{bits 8, count 2}, {bits 3, count 32}, {bits 2}]`.
public struct PrecisionPreset: Codable, Sendable, Equatable {
    public struct Segment: Codable, Sendable, Equatable {
        /// Bit-width of the segment's vectors (one of 16, 8, 4, 3, 2, 1).
        public var bits: Int
        /// Number of vectors; `nil` on the last segment means "as many as the budget allows".
        public var count: Int?

        public init(bits: Int, count: Int?) {
            self.bits = bits
            self.count = count
        }
    }

    public var name: String
    public var description: String
    public var segments: [Segment]

    public init(name: String, description: String, segments: [Segment]) {
        self.name = name
        self.description = description
        self.segments = segments
    }
}
