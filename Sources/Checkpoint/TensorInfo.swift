/// One tensor's header entry: what it is and where its bytes lie, without the bytes.
///
/// Layout: safetensors stores every tensor row-major (C order, last index fastest). A 2-D weight
/// of shape `[out, in]` (PyTorch `nn.Linear` convention: `y = W x`) holds `W[r][c]` at element
/// `r × in + c`. See `SafetensorsFile.matrixColumnMajor(_:)` for the column-major view that
/// LinearAlgebra's `Matrix` expects.
public struct TensorInfo: Sendable, Hashable {
    public let name: String
    public let dtype: DType
    /// Dimensions, outermost first. `[]` is a scalar (one element).
    public let shape: [Int]
    /// Byte range `[begin, end)` relative to the start of the data section (not the file).
    public let dataOffsets: Range<Int>

    public init(name: String, dtype: DType, shape: [Int], dataOffsets: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    /// `end − begin`, equal to `elementCount × dtype.byteSize` once validated.
    public var byteCount: Int { dataOffsets.count }

    /// Product of the shape (1 for a scalar, 0 if any dimension is 0).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A tensor to be written: its name, dtype and shape, which fix its byte count.
public struct TensorDeclaration: Sendable, Hashable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    /// `product(shape) × dtype.byteSize`, or `nil` if a dimension is negative or it overflows.
    public var byteCount: Int? {
        var total = dtype.byteSize
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (product, overflow) = total.multipliedReportingOverflow(by: dimension)
            guard !overflow else { return nil }
            total = product
        }
        return total
    }
}

extension String {
    /// Byte-wise (UTF-8) ordering: platform-independent and what makes written headers and
    /// listings deterministic.
    @usableFromInline
    func utf8Precedes(_ other: String) -> Bool {
        utf8.lexicographicallyPrecedes(other.utf8)
    }
}
