import ArgumentParser
import Foundation
import Testing
@testable import deltaplan

/// Bad arguments to a subcommand, and the text its rejection must contain: the option named,
/// and for a `validate()` check the check's own wording (so a generic parser error cannot pass).
struct BadArguments: CustomTestStringConvertible, Sendable {
    var arguments: [String]
    var expected: [String]

    init(_ arguments: String, _ expected: String...) {
        self.arguments = arguments.split(separator: " ").map(String.init)
        self.expected = expected
    }

    var testDescription: String { "deltaplan " + arguments.joined(separator: " ") }
}

@Suite struct ValidationTests {
    /// Every check of every subcommand's `validate()` (and of `StorageOptions.validate()` shared by
    /// plan): parsing fails with exit status 64 (`ExitCode.validationFailure`, argument-parser's
    /// status for a `ValidationError`) and a message naming the option.
    @Test(arguments: [
        // analyze
        BadArguments("analyze --base b --finetuned f --out o --max-rank 0", "--max-rank must be at least 1, got 0"),
        BadArguments("analyze --base b --finetuned f --out o --power-iterations=-1", "--power-iterations must not be negative"),
        BadArguments("analyze --base b --finetuned f --out o --shard 0/3", "--shard", "I/N needs 1 ≤ I ≤ N, got 0/3"),
        BadArguments("analyze --base b --finetuned f --out o --shard 2", "--shard", "expected I/N (e.g. 2/4), got '2'"),
        BadArguments("analyze --finalize s --out o", "--finalize STORE takes no other option"),
        BadArguments("analyze --finalize s --shard 1/2", "--finalize STORE takes no other option"),
        BadArguments("analyze --finetuned f --out o", "--base", "--finalize STORE"),
        BadArguments("compress s --plan p --out o --finalize --shard 1/2", "--finalize assembles what every shard left; it takes no --shard (got 1/2)"),
        BadArguments("compress s --plan p --out o --shard 3/2", "--shard", "I/N needs 1 ≤ I ≤ N, got 3/2"),
        BadArguments("measure s --finalize --shard 1/2", "--finalize checks what every shard left; it takes no --shard (got 1/2)"),
        BadArguments("measure s --group-size 0", "--group-size must be positive"),
        // synth
        BadArguments("synth --profile llama-2-7b --out o --scale 0", "--scale must be in (0, 1], got 0.0"),
        BadArguments("synth --profile llama-2-7b --out o --scale 1.5", "--scale must be in (0, 1], got 1.5"),
        BadArguments("synth --profile llama-2-7b --out o --layers 0", "--layers must be at least 1, got 0"),
        BadArguments("synth --profile llama-2-7b --out o --dtype I8", "--dtype must be BF16, F16 or F32, got I8"),
        BadArguments("synth --profile llama-2-7b --out o --tokens 0", "--tokens must be at least 1"),
        BadArguments("synth --profile llama-2-7b --out o --shard-size 0", "--shard-size must be positive"),
        // plan
        BadArguments("plan store --profile llama-2-7b --budget 1/16", "give either an analysis STORE or --profile NAME"),
        BadArguments("plan --budget 1/16", "give either an analysis STORE or --profile NAME"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --verify 0", "--verify needs an analysis STORE"),
        BadArguments("plan store --budget 1/16 --verify 11", "--verify takes 0…10 re-solve rounds, got 11"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --strategy best", "'best'", "--strategy", "exact", "preset:delta-come"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --strategy presets:delta-come", "'presets:delta-come'", "--strategy", "preset:single-2"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --strategy preset:nope", "'preset:nope'", "--strategy", "preset:delta-come"),
        BadArguments("plan --profile llama-2-7b --budget 1/0", "invalid --budget '1/0'", "the denominator must be positive"),
        BadArguments("plan --profile llama-2-7b --budget 2", "invalid --budget '2'", "α must be in (0, 1]"),
        BadArguments("plan --profile llama-2-7b --budget lots", "invalid --budget 'lots'"),
        BadArguments("plan --profile llama-2-7b --budget 17bpp", "invalid --budget '17bpp'", "(0, 16]"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --bits 16,5", "invalid --bits '16,5'", "unsupported bit-width 5"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --bits 8,8", "invalid --bits '8,8'", "bit-width 8 is listed twice"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --bits 0", "invalid --bits '0'", "no positive bit-width"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --group-size 0", "--group-size must be positive, got 0"),
        BadArguments("plan --profile llama-2-7b", "give either --budget or --max-error"),
        BadArguments("plan store --budget 1/16 --max-error 0.1", "give either --budget or --max-error"),
        BadArguments("plan store --max-error 0", "--max-error must be a positive number, got 0.0"),
        BadArguments("plan --profile llama-2-7b --max-error 0.1", "--max-error needs an error model"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --calibration c.safetensors", "--calibration goes with a STORE, not --profile"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --plot /nonexistent-deltaplan-dir/plan.svg",
                     "--plot /nonexistent-deltaplan-dir/plan.svg", "directory /nonexistent-deltaplan-dir does not exist"),
        BadArguments("plan store --budget 1/16 --plot /", "--plot / is a directory"),
        BadArguments("plan store --budget 1/16 --plot /proc/version/plan.svg", "/proc/version is not a directory"),
        BadArguments("plan store --budget 1/16 --pin q_proj", "invalid --pin 'q_proj'", "expected REGEX=SPEC"),
        BadArguments("plan store --budget 1/16 --pin q_proj=8:2,8:30", "invalid --pin 'q_proj=8:2,8:30'", "strictly decrease"),
        BadArguments("plan store --budget 1/16 --pin q_proj=2:fill,8:2", "invalid --pin 'q_proj=2:fill,8:2'", "only the last segment"),
        BadArguments("plan store --budget 1/16 --pin (=keep", "invalid --pin '(=keep'", "not a valid regular expression"),
        BadArguments("plan store --budget 1/16 --pin q_proj=kep", "pin 'q_proj=kep'", "no precision preset named 'kep'", "'keep'"),
        BadArguments("plan store --budget 1/16 --bits-for mlp=8,5", "invalid --bits-for 'mlp=8,5'", "unsupported bit-width 5"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --pin q_proj=keep", "--pin and --bits-for need an analysis STORE"),
        BadArguments("compare store --pin q_proj=3:x", "invalid --pin 'q_proj=3:x'", "positive integer or 'fill'"),
        // show
        BadArguments("show plan.json --plot /nonexistent-deltaplan-dir/plan.svg", "directory /nonexistent-deltaplan-dir does not exist"),
        // compare
        BadArguments("compare store --budgets 1/16,x", "invalid --budgets 'x'"),
        BadArguments("compare store --budgets ,", "--budgets lists no budget"),
        BadArguments("compare store --group-size 0", "--group-size must be positive"),
        BadArguments("compare store --bits 16,7", "invalid --bits '16,7'", "unsupported bit-width 7"),
        BadArguments("compare store --strategies exact,fastest", "unknown strategy 'fastest'", "'low-rank', 'bitdelta'"),
        BadArguments("compare store --sweep 1/4:1/64", "invalid --sweep '1/4:1/64'", "FROM must be below TO", "1/64:1/4"),
        BadArguments("compare store --sweep 1/64-1/4", "invalid --sweep '1/64-1/4'", "two or three parts separated by ':'"),
        BadArguments("compare store --sweep 1/64:1/4:100", "COUNT must be a whole number in 3…65"),
        BadArguments("compare store --sweep 1/64:1GiB", "is a size; a sweep runs over α"),
        BadArguments("compare store --sweep 1/64:1/4 --budgets 1/16", "--sweep and --budgets are mutually exclusive"),
        BadArguments("compare store --strategies exact,preset:nope", "unknown strategy 'preset:nope'", "no precision preset named 'nope'", "delta-come"),
        // Strategy names are parsed with the arguments, before any store is opened.
        BadArguments("compare missing-store --strategies greedy,bogus", "unknown strategy 'bogus'"),
        // fleet
        BadArguments("fleet --budget 1/16 --out o", "give at least one --store NAME=STORE"),
        BadArguments("fleet --store math --budget 1/16 --out o", "--store must be NAME=STORE, got 'math'"),
        BadArguments("fleet --store a=s --store a=t --budget 1/16 --out o", "--store names 'a' twice"),
        BadArguments("fleet --store a=s --weight b=2 --budget 1/16 --out o", "--weight names 'b', which no --store names"),
        BadArguments("fleet --store a=s --weight a=-1 --budget 1/16 --out o", "--weight must be NAME=W with W ≥ 0"),
        BadArguments("fleet --store a=s --budget 2 --out o", "invalid --budget '2'"),
        BadArguments("fleet --store a=s --max-error a --budget 1/16 --out o", "--max-error must be NAME=E with E ≥ 0, got 'a'"),
        BadArguments("fleet --store a=s --max-error b=0.1 --budget 1/16 --out o", "--max-error names 'b', which no --store names"),
        BadArguments("fleet --store a=s --max-error a=0.1 --max-error a=0.2 --budget 1/16 --out o", "--max-error names 'a' twice"),
        BadArguments("fleet --store a=s --max-error a=0.1 --budget 1/16 --strategy preset:delta-come --out o",
                     "--max-error needs a search strategy"),
        // footprint
        BadArguments("footprint --profile llama-2-7b --models 2,0", "--models must be a comma-separated list of positive integers, got '2,0'"),
        BadArguments("footprint --profile llama-2-7b --models two", "--models must be a comma-separated list of positive integers, got 'two'"),
        BadArguments("footprint --profile llama-2-7b --gpu-memory 1/2", "--gpu-memory must be a size", "got '1/2'"),
        BadArguments("footprint --profile llama-2-7b --budget 0", "invalid --budget '0'"),
        BadArguments("footprint --profile llama-2-7b --group-size 0", "--group-size must be positive"),
        BadArguments("footprint --profile llama-2-7b --store a=s", "--store needs --gpu-memory"),
        BadArguments("footprint --profile llama-2-7b --gpu-memory 80GiB --store a", "--store must be NAME=STORE, got 'a'"),
        // merge
        BadArguments("merge --base b --artifact a --out o --dtype I8", "--dtype must be F32, BF16, F16 or F64, not I8"),
        // serve
        BadArguments("serve --data-dir d --workers 0", "--workers must be at least 1, got 0"),
        BadArguments("serve --data-dir d --port 65536", "--port must be in 0...65535, got 65536"),
        BadArguments("serve --data-dir d --slurm-shards 2", "--slurm-shards needs --executor slurm"),
        BadArguments("serve --data-dir d --executor local --slurm-poll-seconds 1", "--slurm-poll-seconds needs --executor slurm"),
        BadArguments("serve --data-dir d --executor slurm --slurm-shards 0", "--slurm-shards must be at least 1, got 0"),
        BadArguments("serve --data-dir d --slurm-option=--mem=2G", "--slurm-option needs --executor slurm"),
        BadArguments("serve --data-dir d --executor slurm --slurm-option=--array=1-9", "the service sets --array itself"),
        BadArguments("serve --data-dir d --executor slurm --slurm-option=-p", "'-p' is not a long sbatch option"),
        BadArguments("serve --data-dir d --executor slurm --slurm-poll-seconds 0", "--slurm-poll-seconds must be positive, got 0.0"),
    ])
    func validateRejects(_ bad: BadArguments) throws {
        let outcome = try #require(parseFailure(bad.arguments), "\(bad.testDescription) parsed")
        #expect(outcome.exitCode == .validationFailure)
        for text in bad.expected { #expect(outcome.message.contains(text), "\(outcome.message)") }
    }

    /// Values argument-parser itself refuses (not an `ExpressibleByArgument` case, a missing
    /// required option, an unknown subcommand): exit status 64 and the option or value named.
    @Test(arguments: [
        BadArguments("plan --profile llama-2-7b --budget 1/16 --accounting bytes", "--accounting", "bytes"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --scope layer", "--scope", "layer"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --export gguf", "--export", "gguf"),
        BadArguments("plan --profile llama-2-7b --budget 1/16 --seed=minus", "--seed", "minus"),
        BadArguments("plan store --max-error 0.1 --error-unit percent", "--error-unit", "percent"),
        BadArguments("compare store --method awq", "--method", "awq"),
        BadArguments("compare store --format csv", "--format", "csv"),
        BadArguments("compress store --out o", "--plan"),
        BadArguments("compress store --plan p --out o --order backwards", "--order", "backwards"),
        BadArguments("evaluate --base b --finetuned f", "--artifact"),
        BadArguments("evaluate --artifact a --base b --finetuned f --format html", "--format", "html"),
        BadArguments("merge --base b --artifact a --out o --dtype F8", "--dtype", "F8"),
        BadArguments("spectrum store --format csv", "--format", "csv"),
        BadArguments("inspect model.safetensors --format yaml", "--format", "yaml"),
        BadArguments("calibration inspect c.safetensors --format yaml", "--format", "yaml"),
        BadArguments("calibration import-imatrix imatrix.gguf", "--out"),
        BadArguments("analyze --base b --out o", "--finetuned"),
        BadArguments("synth --out o", "--profile"),
        BadArguments("serve --port 80", "--data-dir"),
        BadArguments("footprint", "--profile"),
        BadArguments("footprint --profile llama-2-7b --max-rank 4", "--max-rank"),
        BadArguments("optimize", "optimize"),
    ])
    func parserRejects(_ bad: BadArguments) throws {
        let outcome = try #require(parseFailure(bad.arguments), "\(bad.testDescription) parsed")
        #expect(outcome.exitCode == .validationFailure)
        for text in bad.expected { #expect(outcome.message.contains(text), "\(outcome.message)") }
    }

    /// The same arguments with the bad value fixed parse, so the rejections above are the bad
    /// value's doing.
    @Test(arguments: [
        "analyze --base b --finetuned f --out o --max-rank 1 --power-iterations=0",
        "analyze --base b --finetuned f --out o --shard 3/3",
        "analyze --finalize s",
        "compress s --plan p --out o --shard 2/2",
        "compress s --plan p --out o --finalize",
        "measure s --shard 1/4 --order paper --method rtn --group-size 64",
        "measure s --finalize",
        "synth --profile llama-2-7b --out o --scale 1 --layers 1 --dtype f16 --tokens 1 --shard-size 1",
        "plan store --budget 1/16",
        "plan --profile llama-2-7b --budget 1/16 --strategy preset:single-3 --bits 16,8,3,2 --group-size 64",
        "compare store --strategies exact,preset:delta-come,low-rank,bitdelta",
        "fleet --store a=s --store b=t --weight a=2 --budget 22GiB --strategy preset:delta-come --out o",
        "fleet --store a=s --store b=t --max-error a=0.05 --budget 1/16 --out o",
        "plan --profile llama-2-7b --budget 850MiB --strategy greedy",
        "plan store --max-error 0.05 --error-unit absolute",
        "compare store --budgets 1/16,1bpp --bits 8,4 --group-size 64",
        "compare store --sweep 1/64:1/4:5 --format svg",
        "compare store --sweep 0.25bpp:1/4",
        "plan --profile llama-2-7b --budget 1/16 --plot plan.svg",
        "show plan.json --plot /tmp/plan.svg",
        "footprint --profile llama-2-7b --models 1,3 --gpu-memory 80GiB --budget 1bpp",
        "merge --base b --artifact a --out o --dtype f32",
        "serve --data-dir d --workers 1 --port 0",
        "serve --data-dir d --port 65535",
        "serve --data-dir d --executor slurm --slurm-shards 8 --slurm-poll-seconds 0.5",
        "serve --data-dir d --executor slurm --slurm-option=--partition=cpu --slurm-option=--cpus-per-task=8",
    ])
    func fixedArgumentsParse(_ arguments: String) {
        let outcome = parseFailure(arguments.split(separator: " ").map(String.init))
        #expect(outcome == nil, "\(outcome?.message ?? "")")
    }

    /// `validate()` called directly on a parsed command whose option is then made invalid throws a
    /// `ValidationError` itself (not only through the parser), for each command that has checks.
    @Test func validateThrowsValidationError() throws {
        var analyze = try Analyze.parse(["--base", "b", "--finetuned", "f", "--out", "o"])
        try analyze.validate()
        analyze.maxRank = 0
        #expect(throws: ValidationError.self) { try analyze.validate() }

        var synth = try Synth.parse(["--profile", "llama-2-7b", "--out", "o"])
        try synth.validate()
        synth.dtype = "F64"
        #expect(throws: ValidationError.self) { try synth.validate() }

        var plan = try PlanCommand.parse(["--profile", "llama-2-7b", "--budget", "1/16"])
        try plan.validate()
        plan.profile = nil  // neither a store nor a profile
        #expect(throws: ValidationError.self) { try plan.validate() }

        var storage = try StorageOptions.parse(["--budget", "1/16"])
        try storage.validate()
        storage.groupSize = 0
        #expect(throws: ValidationError.self) { try storage.validate() }

        var compare = try CompareCommand.parse(["store"])
        try compare.validate()
        compare.groupSize = -1
        #expect(throws: ValidationError.self) { try compare.validate() }
        var sweep = try CompareCommand.parse(["store", "--sweep", "1/64:1/4"])
        try sweep.validate()
        #expect(sweep.resolvedBudgets.count == 9)
        sweep.budgets = CompareCommand.defaultBudgets
        #expect(throws: ValidationError.self) { try sweep.validate() }

        var footprint = try FootprintCommand.parse(["--profile", "llama-2-7b"])
        try footprint.validate()
        footprint.gpuMemory = "80"
        #expect(throws: ValidationError.self) { try footprint.validate() }

        var merge = try MergeCommand.parse(["--base", "b", "--artifact", "a", "--out", "o"])
        try merge.validate()
        merge.dtype = .u8
        #expect(throws: ValidationError.self) { try merge.validate() }

        var serve = try Serve.parse(["--data-dir", "d"])
        try serve.validate()
        serve.port = -1
        #expect(throws: ValidationError.self) { try serve.validate() }
    }

    /// The root command lists every subcommand the README documents.
    @Test func rootListsEverySubcommand() {
        let names = DeltaPlan.configuration.subcommands.map { $0._commandName }
        #expect(names == ["demo", "synth", "inspect", "calibration", "analyze", "spectrum", "plan", "show", "compare", "diff", "fleet", "footprint",
                          "profiles", "measure", "compress", "distil", "merge", "evaluate", "serve"])
        #expect(CalibrationCommand.configuration.subcommands.map { $0._commandName } == ["inspect", "import-imatrix"])
        #expect(DistilCommand.configuration.subcommands.map { $0._commandName } == ["export", "apply"])
    }
}
