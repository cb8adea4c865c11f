/// Why a Slurm command failed. Each case names the command, so that a job's error says which one.
public enum SlurmError: Error, Equatable, CustomStringConvertible {
    /// The command is not on `PATH` (the service's environment).
    case notFound(command: String)
    /// It ran and exited with a non-zero status; `errors` is its standard error.
    case failed(command: String, status: Int32, errors: String)
    /// It printed something that is not what it prints (e.g. sbatch's job id).
    case unexpectedOutput(command: String, output: String)
    /// It did not end within the time allowed (the controller may be unreachable).
    case timedOut(command: String, seconds: Double)
    /// It could not be started.
    case cannotRun(command: String, reason: String)

    public var description: String {
        switch self {
        case let .notFound(command): "\(command) not found on PATH: serve --executor slurm needs the Slurm client commands"
        case let .failed(command, status, errors):
            "\(command) failed (exit status \(status))" + (errors.isEmpty ? "" : ": \(errors)")
        case let .unexpectedOutput(command, output): "\(command) printed '\(output)', not what it prints"
        case let .timedOut(command, seconds): "\(command) did not answer within \(Int(seconds)) s"
        case let .cannotRun(command, reason): "cannot run \(command): \(reason)"
        }
    }
}
