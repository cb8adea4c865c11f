import Foundation
import Reporting

/// Progress of long work on standard error: a live line with an ETA on a terminal, one plain
/// line per finished step when standard error is not a terminal, nothing when `CI` is set.
final class TerminalProgress {
    enum Mode { case live, lines, quiet }

    let label: String
    let mode: Mode
    private let start = Date()
    private var lastDraw = Date.distantPast

    init(label: String) {
        self.label = label
        if ProcessInfo.processInfo.environment["CI"] != nil {
            mode = .quiet
        } else {
            mode = isatty(STDERR_FILENO) != 0 ? .live : .lines
        }
    }

    /// Reports that `done` of `total` units of work (any unit: matrices, FLOPs) are finished.
    /// `current` names what is under way.
    func update(done: Double, total: Double, step: Int, steps: Int, current: String, finished: Bool = false) {
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 && done < total ? " · ETA " + Format.duration(elapsed / done * (total - done)) : ""
        let percent = total > 0 ? Int((100 * done / total).rounded(.down)) : 100
        let line = "\(label): [\(step)/\(steps)] \(percent)% \(current) · \(Format.duration(elapsed))\(eta)"
        switch mode {
        case .quiet: return
        case .lines: if finished { write(line + "\n") }
        case .live:
            // Redraw at most 10 times a second.
            guard finished || Date().timeIntervalSince(lastDraw) > 0.1 else { return }
            lastDraw = Date()
            write("\r\u{1B}[K" + line)
        }
    }

    /// Reports that step `done` of `total` (one unit each) finished on `name`.
    func step(_ done: Int, of total: Int, _ name: String) {
        update(done: Double(done), total: Double(total), step: done, steps: total, current: name, finished: true)
    }

    /// A message of its own (a skipped tensor, a warning), above a live line.
    func note(_ message: String) {
        guard mode != .quiet else { return }
        write((mode == .live ? "\r\u{1B}[K" : "") + message + "\n")
    }

    /// Ends the live line.
    func finish(_ message: String) {
        switch mode {
        case .quiet: return
        case .lines: write(message + "\n")
        case .live: write("\r\u{1B}[K" + message + "\n")
        }
    }

    private func write(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }
}

/// Prints a line to standard output unbuffered, so it stays in order with progress on standard error.
func say(_ text: String = "") {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
