import Foundation

/// The state of one Slurm job or array task, as `squeue %T` and `sacct State` print it, in the
/// three classes a job of the service needs: still going, completed, or ended otherwise.
public enum SlurmJobState: Sendable, Equatable, CustomStringConvertible {
    /// PENDING, CONFIGURING, RUNNING, COMPLETING, SUSPENDED, REQUEUED, … : not ended yet.
    case active(String)
    /// COMPLETED: exit status 0.
    case completed
    /// FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, BOOT_FAIL, DEADLINE, PREEMPTED, … :
    /// ended without completing.
    case ended(String)

    /// The end states other than COMPLETED (Slurm's `job_state_string` names).
    static let endStates: Set<String> = [
        "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
    ]

    /// `text` as printed: its first word (sacct prints `CANCELLED by 0`), case-insensitive.
    /// Unknown names count as active: a later look decides.
    public init(parsing text: String) {
        let word = text.split(whereSeparator: { $0 == " " || $0 == "+" }).first.map { $0.uppercased() } ?? ""
        if word == "COMPLETED" {
            self = .completed
        } else if Self.endStates.contains(word) {
            self = .ended(word)
        } else {
            self = .active(word.isEmpty ? "UNKNOWN" : word)
        }
    }

    public var description: String {
        switch self {
        case let .active(name), let .ended(name): name
        case .completed: "COMPLETED"
        }
    }
}

/// The states of the jobs listed by `squeue --noheader --array --format=%i|%T` or
/// `sacct --noheader --parsable2 --format=JobID,State`: job id (`123`, or `123_4` for task 4 of
/// array job 123) → state. A pending array may be listed as one line for several tasks
/// (`123_[2-4,7%2]`): each task gets the line's state. Steps (`123.batch`) and lines that are
/// not `ID|STATE` are ignored.
func parseSlurmStates(_ output: String) -> [String: SlurmJobState] {
    var states: [String: SlurmJobState] = [:]
    for line in output.split(whereSeparator: \.isNewline) {
        let fields = line.split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count >= 2 else { continue }
        let id = fields[0].trimmingCharacters(in: .whitespaces), state = SlurmJobState(parsing: String(fields[1]))
        guard !id.isEmpty, !id.contains(".") else { continue }
        for expanded in expandArrayTasks(id) { states[expanded] = state }
    }
    return states
}

/// `123_[1-3,5%2]` → `123_1`, `123_2`, `123_3`, `123_5`; any other id → itself.
private func expandArrayTasks(_ id: String) -> [String] {
    guard let open = id.firstIndex(of: "["), id.hasSuffix("]") else { return [id] }
    let prefix = id[..<open]
    let inside = id[id.index(after: open)..<id.index(before: id.endIndex)].split(separator: "%").first ?? ""
    var ids: [String] = []
    for part in inside.split(separator: ",") {
        let bounds = part.split(separator: "-").compactMap { Int($0) }
        if bounds.count == 1 {
            ids.append("\(prefix)\(bounds[0])")
        } else if bounds.count == 2, bounds[0] <= bounds[1], bounds[1] - bounds[0] < 100_000 {
            ids += (bounds[0]...bounds[1]).map { "\(prefix)\($0)" }
        }
    }
    return ids
}
