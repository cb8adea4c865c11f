// swift-tools-version: 6.0
import Foundation
import PackageDescription

// libFuzzer harnesses of DeltaPlan's readers of hostile input, one executable per reader. A package
// of its own, so that the main build never sees them: build and run them with `Fuzz/run.sh`, which
// passes `-Xswiftc -sanitize=fuzzer,address` (without it they do not link: libFuzzer's driver is
// missing). Each harness exports `LLVMFuzzerTestOneInput` and its `main` runs libFuzzer's driver on it.
//
// The main package is a path dependency; its identity is its folder's name (`main`, a worktree's
// name…), read from this file's location so that any checkout works.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let deltaPlan = root.lastPathComponent.lowercased()

let package = Package(
    name: "DeltaPlanFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(path: root.path)],
    targets: [
        // libFuzzer's driver, declared for Swift; and the harnesses' common part (the driver call,
        // scratch files for the inputs: the readers open paths).
        .target(name: "CLibFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"]),
        // `SafetensorsFile(contentsOf:)` (header framing, the JSON parser, every entry, the tiling),
        // then every tensor read back through the mapping.
        .executableTarget(
            name: "fuzz-safetensors",
            dependencies: ["FuzzSupport", .product(name: "Checkpoint", package: deltaPlan)]),
        // `Plan.decode(_:file:)` (what `Plan.read(from:)` runs on a file's bytes), then the
        // round trip a valid plan must survive.
        .executableTarget(
            name: "fuzz-plan",
            dependencies: ["FuzzSupport", .product(name: "Optimizer", package: deltaPlan)]),
        // `Artifact(at:)` on a directory whose `manifest.json` is the input, beside a real
        // `delta.safetensors`; then every matrix reconstructed as `merge` does.
        .executableTarget(
            name: "fuzz-manifest",
            dependencies: [
                "FuzzSupport",
                .product(name: "ArtifactFormat", package: deltaPlan),
                .product(name: "ContentHash", package: deltaPlan),
                .product(name: "Optimizer", package: deltaPlan),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
