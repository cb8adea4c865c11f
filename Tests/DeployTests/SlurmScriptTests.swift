import Foundation
import Testing

/// The array-job scripts of `Deploy/slurm/` run as Slurm runs them — `bash` with the array's
/// variables set — in front of a stand-in `deltaplan` that prints its arguments. A real cluster runs
/// them in `Deploy/slurm/test-cluster.sh` (CI).
@Suite("Slurm scripts")
struct SlurmScriptTests {
    let slurm = deployDirectory.appendingPathComponent("slurm")

    /// The variables Slurm sets for task `task` of an array `first-last`.
    func arrayTask(_ task: Int, of first: Int, _ last: Int) -> [String: String] {
        ["SLURM_ARRAY_TASK_ID": "\(task)", "SLURM_ARRAY_TASK_MIN": "\(first)", "SLURM_ARRAY_TASK_MAX": "\(last)",
         "SLURM_ARRAY_TASK_COUNT": "\(last - first + 1)", "SLURM_ARRAY_JOB_ID": "41", "SLURM_CPUS_PER_TASK": "2"]
    }

    func run(_ script: String, _ arguments: [String] = [], environment: [String: String]) throws -> ScriptRun {
        try runScript("/bin/bash", [slurm.appendingPathComponent(script).path] + arguments, environment: environment)
    }

    @Test("every script parses, fails loudly (set -euo pipefail) and every sbatch file is a 1-N array")
    func scriptsAreStrict() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: slurm.path).filter { $0.hasSuffix(".sh") || $0.hasSuffix(".sbatch") }
        #expect(Set(files).isSuperset(of: ["analyze.sbatch", "compress.sbatch", "submit.sh", "local-cluster.sh", "test-cluster.sh"]))
        for file in files {
            let path = slurm.appendingPathComponent(file).path
            let parse = try runScript("/bin/bash", ["-n", path], environment: [:])
            #expect(parse.status == 0, "\(file): \(parse.errors)")
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.contains("\nset -euo pipefail\n"), "\(file) does not set -euo pipefail")
            #expect(FileManager.default.isExecutableFile(atPath: path), "\(file) is not executable")
            if file.hasSuffix(".sbatch") {
                #expect(text.contains("\n#SBATCH --array=1-"), "\(file) has no #SBATCH --array=1-N")
            }
        }
    }

    @Test("analyze.sbatch: task I of a 1-N array runs analyze --shard I/N with the inputs of the environment",
          arguments: [(1, 4), (3, 4), (4, 4), (1, 1)])
    func analyzeShard(task: Int, shards: Int) throws {
        let fake = try FakeDeltaplan()
        defer { fake.cleanUp() }
        let environment = arrayTask(task, of: 1, shards).merging(
            ["DELTAPLAN": fake.path, "BASE": "/d/base model", "FINETUNED": "/d/ft", "CALIBRATION": "/d/c.safetensors",
             "STORE": "/d/my store"]) { a, _ in a }
        let run = try run("analyze.sbatch", ["--max-rank", "64"], environment: environment)
        #expect(run.status == 0, "\(run.errors)")
        let arguments = run.output.split(separator: "\n").map(String.init).drop { $0 != "analyze" }.map { $0 }
        #expect(arguments.first == "analyze")
        #expect(value(of: "--shard", in: arguments) == "\(task)/\(shards)")
        #expect(value(of: "--base", in: arguments) == "/d/base model")
        #expect(value(of: "--finetuned", in: arguments) == "/d/ft")
        #expect(value(of: "--calibration", in: arguments) == "/d/c.safetensors")
        #expect(value(of: "--out", in: arguments) == "/d/my store")
        #expect(value(of: "--threads", in: arguments) == "2")
        #expect(value(of: "--max-rank", in: arguments) == "64")
    }

    @Test("a rerun of one index (sbatch --array=3) must name SHARDS, and then runs that shard of N")
    func rerunOfOneIndex() throws {
        let fake = try FakeDeltaplan()
        defer { fake.cleanUp() }
        var environment = arrayTask(3, of: 3, 3).merging(["DELTAPLAN": fake.path, "BASE": "b", "FINETUNED": "f", "STORE": "s"]) { a, _ in a }
        let refused = try run("analyze.sbatch", environment: environment)
        #expect(refused.status == 2)
        #expect(refused.errors.contains("set SHARDS=N"), "\(refused.errors)")
        #expect(!refused.output.contains("analyze\n"), "ran deltaplan without knowing N")
        environment["SHARDS"] = "4"
        let rerun = try run("analyze.sbatch", environment: environment)
        #expect(rerun.status == 0, "\(rerun.errors)")
        #expect(value(of: "--shard", in: rerun.output.split(separator: "\n").map(String.init)) == "3/4")
        #expect(value(of: "--calibration", in: rerun.output.split(separator: "\n").map(String.init)) == nil)
    }

    @Test("a failed shard exits non-zero and prints the command that reruns it alone")
    func failedShardSaysHowToRerun() throws {
        let fake = try FakeDeltaplan(status: 1)
        defer { fake.cleanUp() }
        for (script, inputs) in [("analyze.sbatch", ["BASE": "b", "FINETUNED": "f", "STORE": "s"]),
                                 ("compress.sbatch", ["STORE": "s", "PLAN": "p.json", "ARTIFACT": "a"])] {
            let environment = arrayTask(2, of: 1, 4).merging(inputs) { a, _ in a }.merging(["DELTAPLAN": fake.path]) { a, _ in a }
            let run = try run(script, ["--method", "rtn"], environment: environment)
            #expect(run.status == 1, "\(script)")
            #expect(run.errors.contains("SHARDS=4 sbatch --array=2 Deploy/slurm/\(script) --method rtn"), "\(script): \(run.errors)")
        }
    }

    @Test("a missing input fails before deltaplan runs, naming the variable")
    func missingInput() throws {
        let fake = try FakeDeltaplan()
        defer { fake.cleanUp() }
        let run = try run("compress.sbatch", environment: arrayTask(1, of: 1, 2).merging(["DELTAPLAN": fake.path, "STORE": "s", "PLAN": "p"]) { a, _ in a })
        #expect(run.status != 0)
        #expect(run.errors.contains("ARTIFACT"), "\(run.errors)")
        #expect(run.output.isEmpty || !run.output.contains("compress\n"))
    }

    @Test("compress.sbatch: task I of a 1-N array runs compress STORE --plan P --out A --shard I/N", arguments: [1, 2])
    func compressShard(task: Int) throws {
        let fake = try FakeDeltaplan()
        defer { fake.cleanUp() }
        let environment = arrayTask(task, of: 1, 2).merging(["DELTAPLAN": fake.path, "STORE": "/d/store", "PLAN": "/d/plan.json", "ARTIFACT": "/d/art"]) { a, _ in a }
        let run = try run("compress.sbatch", ["--method", "rtn"], environment: environment)
        #expect(run.status == 0, "\(run.errors)")
        let arguments = run.output.split(separator: "\n").map(String.init).drop { $0 != "compress" }.map { $0 }
        #expect(Array(arguments.prefix(2)) == ["compress", "/d/store"])
        #expect(value(of: "--plan", in: arguments) == "/d/plan.json")
        #expect(value(of: "--out", in: arguments) == "/d/art")
        #expect(value(of: "--shard", in: arguments) == "\(task)/2")
        #expect(value(of: "--method", in: arguments) == "rtn")
    }
}
