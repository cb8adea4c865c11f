import ArgumentParser
import ModelProfiles

@main
struct DeltaPlan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deltaplan",
        abstract: "Plan and apply mixed-precision compression of fine-tuned model deltas (Delta-CoMe).",
        version: DeltaPlanVersion.string,
        subcommands: [
            Demo.self, Synth.self, Inspect.self, CalibrationCommand.self, Analyze.self, Spectrum.self,
            PlanCommand.self, ShowCommand.self, CompareCommand.self, DiffCommand.self, FleetCommand.self, FootprintCommand.self, Profiles.self,
            MeasureCommand.self, Compress.self, DistilCommand.self, MergeCommand.self, EvaluateCommand.self, Serve.self,
        ])
}
