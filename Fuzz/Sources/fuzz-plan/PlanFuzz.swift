import Foundation
import FuzzSupport
import Optimizer

/// One input: the bytes of a plan file, decoded and validated as `Plan.read(from:)` does after
/// reading the file. A rejection must be a `PlanFileError` whose message renders; a plan that is
/// accepted must encode, and its encoding must decode to the same plan (what `compress` and the
/// artifact's embedded copy rely on).
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Data(fuzzInput(data, size))
    let plan: Plan
    do { plan = try Plan.decode(input, file: "fuzz.json") } catch {
        precondition(!error.description.isEmpty)
        return 0
    }
    let encoded: Data
    do { encoded = try plan.encoded() } catch { preconditionFailure("a valid plan does not encode: \(error)") }
    do {
        let again = try Plan.decode(encoded, file: "fuzz.json (re-encoded)")
        precondition(again == plan, "a valid plan changes in its round trip")
    } catch { preconditionFailure("a valid plan's encoding is refused: \(error)") }
    for matrix in plan.matrices {
        let allocation = matrix.allocation
        precondition(allocation.segments == matrix.segments)
    }
    return 0
}
