import ArgumentParser
import ModelProfiles

@main
struct DeltaPlan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deltaplan",
        abstract: "Plan and apply mixed-precision compression of fine-tuned model deltas (Delta-CoMe).",
        version: DeltaPlanVersion.string,
        subcommands: [Inspect.self, Synth.self, Analyze.self, Spectrum.self, Demo.self])
}
