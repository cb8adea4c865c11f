/// Why a calibration file was refused: one case per violation, each naming the file and the entry,
/// module, tensor or metadata key to fix. `CalibrationSet` checks all of them when it opens a file
/// (except `nonFinite`, found when values are read).
public enum CalibrationError: Error, Equatable, Sendable {
    /// `deltaplan.calibration_format` is newer than this build reads.
    case unsupportedFormatVersion(file: String, found: Int, supported: Int)
    /// `deltaplan.calibration_format` is not a positive integer.
    case invalidFormatVersion(file: String, value: String)
    /// A tensor only format 2 defines (`.out_gram`, `.grads`, a 1-D `.gram`) in a file that does not
    /// declare format 2.
    case needsFormat2(file: String, tensor: String)
    /// A tensor named only by its suffix (`.gram`), without a module.
    case emptyModuleName(file: String, tensor: String)
    case wrongDType(file: String, entry: String, tensor: String, dtype: String, expected: String)
    case wrongShape(file: String, entry: String, tensor: String, shape: [Int], expected: String)
    /// An entry's `.gram` without its `.count`.
    case missingCount(file: String, entry: String)
    /// A token count below 1.
    case invalidCount(file: String, entry: String, count: Int)
    /// A `.count` or `.inputs` without the `.gram` that makes the entry.
    case orphanTensor(file: String, entry: String, tensor: String)
    /// A metadata value that is not what the format says (the reason says what it must be).
    case invalidMetadata(file: String, key: String, reason: String)
    /// A module with an entry of its own is also aliased to another.
    case aliasShadowsEntry(file: String, module: String, target: String)
    case aliasToMissingEntry(file: String, module: String, target: String)
    /// `module → target → next`: aliases must point at an entry directly.
    case aliasChain(file: String, module: String, target: String, next: String)
    /// `.out_gram` (or `.grads`) without an H: the module has no entry and no alias.
    case outputStatisticsWithoutGram(file: String, module: String, tensor: String)
    /// `.grads` whose module has no input rows (no `.inputs` of its entry, own or aliased).
    case gradsWithoutInputs(file: String, module: String, tensor: String)
    /// `.grads` columns differ from the `.out_gram`'s h_out.
    case outputWidthMismatch(file: String, module: String, tensor: String, columns: Int, outputGramWidth: Int)
    /// `.grads` rows differ from the input rows they pair with.
    case sampleRowMismatch(file: String, module: String, tensor: String, rows: Int, inputs: String, inputRows: Int)
    /// NaN or infinite values, found when the tensor is read.
    case nonFinite(file: String, entry: String, tensor: String)
}

extension CalibrationError: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .unsupportedFormatVersion(file, found, supported):
            "calibration \(file): format version \(found) is newer than this build reads (up to \(supported)); update DeltaPlan"
        case let .invalidFormatVersion(file, value):
            "calibration \(file): deltaplan.calibration_format must be a positive integer, got '\(value)'"
        case let .needsFormat2(file, tensor):
            "calibration \(file): \(tensor) is a format-2 statistic, but the file does not declare deltaplan.calibration_format \"2\""
        case let .emptyModuleName(file, tensor): "calibration \(file): tensor '\(tensor)' has no module name before its suffix"
        case let .wrongDType(file, entry, tensor, dtype, expected):
            "calibration \(file), entry \(entry): \(tensor) must be \(expected), got \(dtype)"
        case let .wrongShape(file, entry, tensor, shape, expected):
            "calibration \(file), entry \(entry): \(tensor) must be \(expected), got \(shape)"
        case let .missingCount(file, entry): "calibration \(file), entry \(entry): \(entry).count is missing"
        case let .invalidCount(file, entry, count):
            "calibration \(file), entry \(entry): \(entry).count must be at least 1, got \(count)"
        case let .orphanTensor(file, entry, tensor):
            "calibration \(file), entry \(entry): \(tensor) has no \(entry).gram"
        case let .invalidMetadata(file, key, reason): "calibration \(file), metadata \(key): \(reason)"
        case let .aliasShadowsEntry(file, module, target):
            "calibration \(file), alias \(module) → \(target): \(module) has an entry of its own"
        case let .aliasToMissingEntry(file, module, target):
            "calibration \(file), alias \(module) → \(target): \(target) has no entry (no \(target).gram)"
        case let .aliasChain(file, module, target, next):
            "calibration \(file), alias \(module) → \(target) → \(next): aliases must point at an entry directly (use \(next))"
        case let .outputStatisticsWithoutGram(file, module, tensor):
            "calibration \(file), module \(module): \(tensor) needs an H, but \(module) has no .gram and no alias"
        case let .gradsWithoutInputs(file, module, tensor):
            "calibration \(file), module \(module): \(tensor) needs the input rows it pairs with, but its entry has no .inputs"
        case let .outputWidthMismatch(file, module, tensor, columns, width):
            "calibration \(file), module \(module): \(tensor) has \(columns) columns, but \(module).out_gram has h_out \(width)"
        case let .sampleRowMismatch(file, module, tensor, rows, inputs, inputRows):
            "calibration \(file), module \(module): \(tensor) has \(rows) rows, but \(inputs) has \(inputRows) (row i of both must be one sample)"
        case let .nonFinite(file, entry, tensor): "calibration \(file), entry \(entry): \(tensor) has NaN or infinite values"
        }
    }
}
