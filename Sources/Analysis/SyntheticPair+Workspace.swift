import Foundation
import LinearAlgebra

extension SyntheticPair {
    /// Float buffers reused across the matrices of one ``SyntheticPair/write(to:parallelism:progress:)``:
    /// a 4096 × 11008 buffer taken from here is already mapped, where a fresh one costs 45 000
    /// page faults (most of `synth`'s system time before buffers were reused).
    ///
    /// Buffers are keyed by element count; a taken buffer's contents are whatever its last user
    /// left (callers overwrite them). At most ``retainedBytes`` of idle buffers are kept (the
    /// memory limit of the running work does not count them).
    ///
    /// `@unchecked Sendable`: workers take and give buffers concurrently, and every access to the
    /// stored properties holds `lock`.
    final class Workspace: @unchecked Sendable {
        static let retainedBytes = 512 << 20

        private let lock = NSLock()
        private var idle: [Int: [[Float]]] = [:]
        private var idleBytes = 0

        /// A `rows × columns` matrix over an idle buffer of that many elements (arbitrary
        /// contents), or a new matrix of zeros.
        func take(rows: Int, columns: Int) -> Matrix<Float> {
            let count = rows * columns
            lock.lock()
            let buffer = idle[count]?.popLast()
            if buffer != nil { idleBytes -= 4 * count }
            lock.unlock()
            if let buffer { return Matrix(rows: rows, columns: columns, elements: buffer) }
            return Matrix(rows: rows, columns: columns)
        }

        /// Keeps `buffer` for a later ``take(rows:columns:)`` if there is room.
        func give(_ buffer: [Float]) {
            let bytes = 4 * buffer.count
            guard bytes > 0 else { return }
            lock.lock()
            defer { lock.unlock() }
            guard idleBytes + bytes <= Self.retainedBytes else { return }
            idle[buffer.count, default: []].append(buffer)
            idleBytes += bytes
        }
    }
}
