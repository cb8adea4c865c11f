/// A random orthogonal `order × order` matrix Q, kept as factors and applied without being formed:
/// Q = (P_L·B_L)⋯(P_1·B_1), where each B_ℓ is block-diagonal with independent Haar-distributed
/// blocks of `blockSize` rows (the last block may be smaller) and each P_ℓ a uniformly random
/// row permutation.
///
/// Why not the QR of an `order × order` Gaussian matrix (exactly Haar): at 4096 or 11008 rows that
/// QR and the product with it cost 4–5·n³ flops, most of `deltaplan synth`'s time; applying Q to
/// an n × k matrix here costs 2·n·k·blockSize flops per layer (GEMMs of blockSize² blocks, on
/// cache-sized bands of A). Q is orthogonal to rounding (every block is a Householder QR's Q). It
/// is not Haar, but after L = 5 layers of 32-blocks every entry of Q is a sum over about 32⁵/n
/// products of block entries, and the entries of its columns are Gaussian to within an excess
/// kurtosis of 0.02 at n = 4096 and 0.06 at n = 11008 (Haar: 0; four layers of 64: 0.015 and
/// 0.05 at 1.6 times the flops; three layers of 64: 1.1 at 11008); a matrix with at most
/// `blockSize` rows is one block: exactly Haar.
///
/// Deterministic for a generator state: the blocks are QRs (`geqrf`/`orgqr`) of Gaussian
/// matrices drawn in order, their columns' signs fixed by R's diagonal (which makes each block Haar).
public struct RandomOrthogonal<Scalar: LinearAlgebraScalar>: Sendable {
    struct Layer: Sendable {
        /// Block b covers rows `b·blockSize ..< min((b+1)·blockSize, order)`.
        var blocks: [Matrix<Scalar>]
        /// Row i of the block product goes to row `permutation[i]`.
        var permutation: [Int]
    }

    public let order: Int
    public let blockSize: Int
    let layers: [Layer]

    /// Draws the layers from `generator`: Gaussian blocks (column-major, block after block), then
    /// the permutation, layer after layer. `layers` defaults to 1 when `order ≤ blockSize` (one
    /// Haar block) and 5 otherwise.
    public init(order: Int, blockSize: Int = 32, layers: Int? = nil, using generator: inout Xoshiro256) {
        precondition(order >= 0 && blockSize >= 1, "RandomOrthogonal needs order ≥ 0 and blockSize ≥ 1")
        let count = layers ?? (order <= blockSize ? 1 : 5)
        precondition(count >= 1, "at least one layer")
        self.order = order
        self.blockSize = blockSize
        var built: [Layer] = []
        for _ in 0..<count {
            var blocks: [Matrix<Scalar>] = []
            var start = 0
            while start < order {
                let size = min(blockSize, order - start)
                blocks.append(Self.haar(size, using: &generator))
                start += size
            }
            built.append(Layer(blocks: blocks, permutation: generator.permutation(order)))
        }
        self.layers = built
    }

    /// A Haar-distributed n × n orthogonal matrix: Q of the QR of a Gaussian matrix, each column
    /// multiplied by the sign of R's diagonal entry (Mezzadri, 2007).
    static func haar(_ n: Int, using generator: inout Xoshiro256) -> Matrix<Scalar> {
        let factors = checked { try qr(Matrix<Scalar>.gaussian(rows: n, columns: n, using: &generator)) }
        var q = factors.q
        q.withUnsafeMutableBufferPointer { p in
            for j in 0..<n where factors.r[j, j] < 0 {
                for i in 0..<n { p[i + j * n] = -p[i + j * n] }
            }
        }
        return q
    }

    /// The nonzero entries of (P₁·B₁)[:, :k]·diag(s), k = `scales.count`: column j of B₁ is
    /// its block's column, moved by P₁ to rows `permutation[·]`; `store(row, column, value)`.
    private func firstLayerColumns(scaledBy scales: [Scalar], _ store: (Int, Int, Scalar) -> Void) {
        let first = layers[0], k = scales.count
        for (b, block) in first.blocks.enumerated() {
            let start = b * blockSize
            guard start < k else { break }
            block.withUnsafeBufferPointer { q in
                for j in start..<min(k, start + block.columns) {
                    for i in 0..<block.rows { store(first.permutation[start + i], j, q[i + (j - start) * block.rows] * scales[j]) }
                }
            }
        }
    }

    /// Q·diag(`scales`) restricted to Q's first `scales.count` columns: `order × scales.count`.
    ///
    /// The first layer is written directly (its product with the first columns of the identity
    /// is its blocks' columns), the others applied as in ``applied(to:)``: about
    /// 2·order·k·blockSize·(L − 1) flops for k columns.
    public func columns(scaledBy scales: [Scalar]) -> Matrix<Scalar> {
        let k = scales.count
        precondition(k <= order, "\(k) columns of a \(order) × \(order) matrix")
        var y = Matrix<Scalar>(rows: order, columns: k)
        guard k > 0 else { return y }
        y.withUnsafeMutableBufferPointer { p in
            firstLayerColumns(scaledBy: scales) { row, column, value in p[row + column * order] = value }
        }
        apply(layers.dropFirst(), to: &y)
        return y
    }

    /// (Q·diag(`scales`) restricted to Q's first `scales.count` columns)ᵀ = diag(s)·Q[:, :k]ᵀ,
    /// `scales.count × order`: the transpose of ``columns(scaledBy:)`` without a transpose.
    public func transposedColumns(scaledBy scales: [Scalar]) -> Matrix<Scalar> {
        var x = Matrix<Scalar>(rows: scales.count, columns: order)
        transposedColumns(scaledBy: scales, into: &x)
        return x
    }

    /// ``transposedColumns(scaledBy:)`` into `x` (`scales.count × order`, overwritten): for
    /// callers that reuse their buffers.
    ///
    /// Computed as [diag(s), 0]·Qᵀ = [diag(s), 0]·B₁ᵀP₁ᵀ⋯B_LᵀP_Lᵀ: column operations, under
    /// which the rows of x are independent, so the layers after the first (written directly) run
    /// on a band of rows at a time, held in a cache-sized buffer: about 2·order·k·blockSize·(L − 1)
    /// flops, and x read and written once.
    public func transposedColumns(scaledBy scales: [Scalar], into x: inout Matrix<Scalar>) {
        let k = scales.count
        precondition(k <= order && x.rows == k && x.columns == order, "\(k) columns of a \(order) × \(order) matrix into \(x.shape)")
        guard k > 0 else { return }
        x.withUnsafeMutableBufferPointer { p in
            UnsafeMutableRawBufferPointer(p).initializeMemory(as: UInt8.self, repeating: 0)
            // Row i of [diag(s), 0]·B₁ᵀP₁ᵀ is the transpose of column i of P₁B₁·diag(s).
            firstLayerColumns(scaledBy: scales) { row, column, value in p[column + row * k] = value }
        }
        guard layers.count > 1 else { return }
        let band = Self.bandWidth(order: order, count: k)
        var product = Matrix<Scalar>(rows: band, columns: order)
        let bytes = MemoryLayout<Scalar>.stride
        for r0 in stride(from: 0, to: k, by: band) {
            let rows = r0 ..< min(k, r0 + band), w = rows.count
            for layer in layers.dropFirst() {
                for (b, block) in layer.blocks.enumerated() {
                    let columns = b * blockSize ..< b * blockSize + block.rows
                    multiplyAdd(x, MatrixBlock(rows: rows, columns: columns), block, .all(block), transposeB: true, beta: 0,
                                into: &product, MatrixBlock(rows: 0..<w, columns: columns))
                }
                product.withUnsafeBufferPointer { source in
                    x.withUnsafeMutableBufferPointer { target in
                        // Raw copies: typed ones would go through value witnesses in unspecialized code.
                        for c in 0..<order {
                            UnsafeMutableRawPointer(target.baseAddress! + r0 + layer.permutation[c] * k)
                                .copyMemory(from: source.baseAddress! + c * band, byteCount: w * bytes)
                        }
                    }
                }
            }
        }
    }

    /// Q·A for an `order × k` matrix A (2·order·k·blockSize flops per layer).
    public func applied(to a: consuming Matrix<Scalar>) -> Matrix<Scalar> {
        var y = consume a
        apply(to: &y)
        return y
    }

    /// A ← Q·A in place. The columns of A are independent under Q, so every layer runs on a
    /// band of columns at a time, held with its block products in a cache-sized buffer: A is
    /// read and written once, not once per layer.
    public func apply(to a: inout Matrix<Scalar>) {
        precondition(a.rows == order, "Q is \(order) × \(order), A has \(a.rows) rows")
        apply(layers[...], to: &a)
    }

    private func apply(_ layers: ArraySlice<Layer>, to y: inout Matrix<Scalar>) {
        let k = y.columns
        guard k > 0, order > 0, !layers.isEmpty else { return }
        let band = Self.bandWidth(order: order, count: k)
        var product = Matrix<Scalar>(rows: order, columns: band)
        for j0 in stride(from: 0, to: k, by: band) {
            let columns = j0 ..< min(k, j0 + band), w = columns.count
            for layer in layers {
                for (b, block) in layer.blocks.enumerated() {
                    let rows = b * blockSize ..< b * blockSize + block.rows
                    multiplyAdd(block, .all(block), y, MatrixBlock(rows: rows, columns: columns), beta: 0,
                                into: &product, MatrixBlock(rows: rows, columns: 0..<w))
                }
                product.withUnsafeBufferPointer { source in
                    y.withUnsafeMutableBufferPointer { target in
                        layer.permutation.withUnsafeBufferPointer { permutation in
                            let from = UnsafeBufferPointer(rebasing: source[0 ..< order * w])
                            let to = UnsafeMutableBufferPointer(rebasing: target[j0 * order ..< (j0 + w) * order])
                            // Concrete loops: this generic type is not specialized in its callers' modules.
                            switch Scalar.precision {
                            case .single: scatterRows(floatBuffer(from), into: floatBuffer(to), permutation, order: order)
                            case .double: scatterRows(doubleBuffer(from), into: doubleBuffer(to), permutation, order: order)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Columns (or rows) per band: about 1 MiB of them (measured best of 256 KiB, 1 MiB and
    /// 4 MiB on a full-size Llama-2-7B layer), at least 16 and at most `count`.
    static func bandWidth(order: Int, count: Int) -> Int {
        max(1, min(count, max(16, (1 << 20) / max(1, order * MemoryLayout<Scalar>.stride))))
    }
}

/// target[permutation[i] + j·order] = source[i + j·order] for every column j. Free and called
/// with concrete `T`, so it is specialized even where `RandomOrthogonal` is not.
private func scatterRows<T>(_ source: UnsafeBufferPointer<T>, into target: UnsafeMutableBufferPointer<T>,
                            _ permutation: UnsafeBufferPointer<Int>, order: Int) {
    for j in 0..<source.count / order {
        let from = source.baseAddress! + j * order, to = target.baseAddress! + j * order
        for i in 0..<order { to[permutation[i]] = from[i] }
    }
}
