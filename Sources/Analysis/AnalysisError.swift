import Checkpoint

/// Why an analysis, a calibration file or a spectrum store was rejected. Every case names the
/// file, tensor or option the user must fix.
public enum AnalysisError: Error, Equatable, CustomStringConvertible {
    case invalidOption(String, String)
    /// A selected tensor exists in one checkpoint only.
    case missingOnOneSide(tensor: String, presentIn: String, missingFrom: String)
    case shapeMismatch(tensor: String, base: [Int], finetuned: [Int])
    case unsupportedDType(tensor: String, dtype: String, file: String)
    /// The delta has NaN or infinite entries (`count` of them).
    case nonFiniteDelta(tensor: String, count: Int)
    case nothingSelected(base: String, patterns: [String])
    /// The calibration entry of `module` has the wrong width for the matrix.
    case calibrationWidthMismatch(module: String, expected: Int, found: Int, file: String)
    /// Selected matrices without a calibration entry, all of them listed.
    case missingCalibration(modules: [String], file: String)
    /// The output statistics of `module` (`tensor`: its `.out_gram` or `.grads`) have h_out `found`,
    /// the matrix has `expected` rows.
    case calibrationOutputWidthMismatch(module: String, tensor: String, expected: Int, found: Int, file: String)
    /// A calibration file was refused.
    case calibration(CalibrationError)
    /// A GGUF file could not be read.
    case gguf(GGUFError)
    /// A llama.cpp imatrix could not be imported.
    case imatrix(ImatrixError)
    /// The store was made from other inputs or options than the ones given now.
    case storeMismatch(store: String, reason: String)
    case storeIncomplete(store: String, missing: [String])
    case storeCorrupt(store: String, file: String, reason: String)
    /// A store analyzed in shards cannot be read or finalized yet (a shard missing, unfinished,
    /// damaged or made from other inputs): the reason names the shard and how to repair it.
    case shards(store: String, reason: String)
    /// A checkpoint could not be read: the underlying message names file and tensor.
    case checkpoint(String)
    /// A numerical routine failed on a tensor (SVD did not converge, say).
    case numerical(tensor: String, reason: String)
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidOption(option, reason): "\(option): \(reason)"
        case let .missingOnOneSide(tensor, present, missing):
            "tensor \(tensor) is in \(present) but not in \(missing) (use --skip-mismatched to skip such tensors)"
        case let .shapeMismatch(tensor, base, finetuned):
            "tensor \(tensor) has shape \(base) in the base but \(finetuned) in the fine-tuned checkpoint"
                + " (use --skip-mismatched to skip such tensors)"
        case let .unsupportedDType(tensor, dtype, file):
            "tensor \(tensor) in \(file) has dtype \(dtype); analyze reads F32, F16, BF16 and F64 weights"
        case let .nonFiniteDelta(tensor, count): "the delta of \(tensor) has \(count) NaN or infinite entries"
        case let .nothingSelected(base, patterns):
            "no 2-D tensor of \(base) matches \(patterns.joined(separator: " or ")); check --include/--exclude"
        case let .calibrationWidthMismatch(module, expected, found, file):
            "calibration entry \(module) in \(file) has width \(found), but the matrix has \(expected) input columns"
        case let .missingCalibration(modules, file):
            "\(file) has no calibration entry for \(modules.count) selected module(s): "
                + modules.joined(separator: ", ") + " (use --allow-missing-calibration to use H = I for them)"
        case let .calibrationOutputWidthMismatch(module, tensor, expected, found, file):
            "calibration \(file): \(tensor) gives module \(module) h_out \(found), but the matrix has \(expected) output rows"
        case let .calibration(error): error.description
        case let .gguf(error): error.description
        case let .imatrix(error): error.description
        case let .storeMismatch(store, reason):
            "the store \(store) was made from other inputs or options: \(reason); use another --out or delete it"
        case let .storeIncomplete(store, missing):
            "the store \(store) is incomplete (\(missing.count) matrices not analyzed, first: \(missing.first ?? "?"));"
                + " rerun analyze with the same options to finish it"
        case let .storeCorrupt(store, file, reason): "the store \(store) is damaged: \(file): \(reason)"
        case let .shards(store, reason): "the store \(store): \(reason)"
        case let .checkpoint(message): message
        case let .numerical(tensor, reason): "\(tensor): \(reason)"
        case let .io(path, reason): "\(path): \(reason)"
        }
    }
}
