import ArgumentParser

@main
struct DeltaPlan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deltaplan",
        abstract: "Plan and apply mixed-precision compression of fine-tuned model deltas (Delta-CoMe).",
        version: DeltaPlanVersion.string,
        subcommands: [PlanCommand.self, FootprintCommand.self, Profiles.self, CompareCommand.self])
}

enum DeltaPlanVersion {
    static let string = "0.1.0"
}
