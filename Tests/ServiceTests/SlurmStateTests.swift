import Foundation
import Testing
@testable import Service

/// What the service reads from squeue and sacct, and what it concludes: no Slurm needed.
@Suite("Slurm states")
struct SlurmStateTests {
    @Test("squeue and sacct lines: tasks, pending ranges, sacct's 'CANCELLED by 0', steps ignored")
    func parsing() {
        let states = parseSlurmStates("""
            812_1|COMPLETED
            812_[2-3,5%2]|PENDING
            813|CANCELLED by 0
            813.batch|CANCELLED
            814|OUT_OF_MEMORY
            not a line
            """)
        #expect(states == ["812_1": .completed, "812_2": .active("PENDING"), "812_3": .active("PENDING"), "812_5": .active("PENDING"),
                           "813": .ended("CANCELLED"), "814": .ended("OUT_OF_MEMORY")])
        #expect(SlurmJobState(parsing: "running") == .active("RUNNING"))
        #expect(SlurmJobState(parsing: "NODE_FAIL") == .ended("NODE_FAIL"))
        #expect(SlurmJobState(parsing: "TIMEOUT") == .ended("TIMEOUT"))
    }

    @Test("outcome: a failed task decides first, then the finalize job; nothing known is unknown")
    func outcome() {
        let submission = SlurmSubmission(shards: 3, arrayJob: "812", finalizeJob: "813")
        #expect(submission.outcome(["812_1": .completed, "812_2": .active("RUNNING"), "812_3": .active("PENDING"), "813": .active("PENDING")])
                == .running(shardsDone: 1))
        #expect(submission.outcome(["812_1": .completed, "812_2": .ended("FAILED"), "812_3": .ended("TIMEOUT"), "813": .ended("CANCELLED")])
                == .shardEnded(index: 2, state: "FAILED"))
        #expect(submission.outcome(["812_1": .completed, "812_2": .completed, "812_3": .completed, "813": .completed]) == .completed)
        #expect(submission.outcome(["812_1": .completed, "812_2": .completed, "812_3": .completed, "813": .ended("FAILED")])
                == .finalizeEnded(state: "FAILED"))
        #expect(submission.outcome(["813": .ended("CANCELLED")]) == .finalizeEnded(state: "CANCELLED"))
        #expect(submission.outcome([:]) == .unknown)
        #expect(submission.outcome(["812_1": .completed, "812_2": .completed, "812_3": .completed]) == .unknown)
        #expect(SlurmSubmission(shards: 2, arrayJob: "900", finalizeJob: nil).outcome([:]) == .running(shardsDone: 0))
    }

    @Test("a Slurm command that does not end in time fails the call, even when a background child keeps its output open")
    func commandTimeout() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-slurm-timeout-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // A wrapper that hangs, and leaves a child holding its output when it is terminated.
        let script = dir.appendingPathComponent("squeue")
        try "#!/bin/sh\n/bin/sleep 30 &\nexec /bin/sleep 30\n".write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        let commands = SlurmCommands(environment: ["PATH": dir.path], timeout: 1)
        let start = Date()
        #expect(throws: SlurmError.timedOut(command: "squeue", seconds: 1)) { try commands.states(of: ["1"]) }
        #expect(Date().timeIntervalSince(start) < 25)
    }

    @Test("shell quoting survives quotes and spaces")
    func quoting() {
        #expect(shellQuoted("/data/it's here") == "'/data/it'\\''s here'")
    }
}
