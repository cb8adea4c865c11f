// swift-tools-version: 6.0
import PackageDescription

// Modules follow the pipeline: numerics (C shims → LinearAlgebra), checkpoint IO (and ContentHash),
// model profiles, Analysis (delta spectra), Optimizer (allocation plans), Quantization (the
// quantizers), ArtifactFormat, Pipeline (the workflows both faces share), Service (HTTP jobs) and
// the `deltaplan` tool; Reporting holds the tables and plots every report shares.
let package = Package(
    name: "DeltaPlan",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "deltaplan", targets: ["deltaplan"]),
        .library(name: "Optimizer", targets: ["Optimizer"]),
        // For the fuzzing harnesses of Fuzz/ (a separate package): the readers of checkpoints and artifacts.
        .library(name: "Checkpoint", targets: ["Checkpoint"]),
        .library(name: "ContentHash", targets: ["ContentHash"]),
        .library(name: "ArtifactFormat", targets: ["ArtifactFormat"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C shims. Only LinearAlgebra imports them.
        .systemLibrary(
            name: "CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CLapacke", pkgConfig: "lapacke",
            providers: [.apt(["liblapacke-dev"])]),
        // GSL without pkg-config on purpose: gsl.pc adds -lgslcblas, and OpenBLAS must provide cblas.
        .systemLibrary(
            name: "CGSL",
            providers: [.apt(["libgsl-dev"])]),

        .target(name: "LinearAlgebra", dependencies: ["CBLAS", "CLapacke", "CGSL"]),
        // Tables, number formats and SVG plots shared by every report.
        .target(name: "Reporting"),
        .target(name: "Checkpoint"),
        // SHA-256 of files and buffers (swift-crypto): input fingerprints and artifact checksums.
        .target(name: "ContentHash", dependencies: ["Checkpoint", .product(name: "Crypto", package: "swift-crypto")]),
        // Model-architecture profiles and precision presets. The data files live in the target folder,
        // bundled as a resource; the top-level Profiles/ is a link to them.
        .target(name: "ModelProfiles", resources: [.copy("Profiles")]),
        .target(
            name: "Analysis",
            dependencies: ["LinearAlgebra", "Checkpoint", "ContentHash", "ModelProfiles", "Reporting"]),
        // The planner links no numeric or cryptography library: a user who only plans needs none.
        .target(name: "Optimizer", dependencies: ["Checkpoint", "ModelProfiles", "Reporting"]),
        // The quantizers (GPTQ, RTN, sign, F16), segment quantization with error feedback, bit packing,
        // and the per-matrix measurement of quantization errors.
        .target(name: "Quantization", dependencies: ["LinearAlgebra", "Checkpoint", "Analysis", "Optimizer"]),
        // The artifact format: its manifest, tensor names, reader, and the model files it carries.
        .target(
            name: "ArtifactFormat",
            dependencies: ["LinearAlgebra", "Checkpoint", "ContentHash", "Analysis", "Optimizer", "Quantization"]),
        // The workflows the CLI and the service share: planning from a store (with its measurement
        // pass), comparisons, compress, evaluate and merge.
        .target(
            name: "Pipeline",
            dependencies: [
                "LinearAlgebra", "Checkpoint", "ContentHash", "ModelProfiles", "Analysis", "Optimizer", "Quantization",
                "ArtifactFormat",
            ]),
        // The HTTP optimizer service (`deltaplan serve`): jobs persisted in SQLite, run on a worker pool.
        .target(
            name: "Service",
            dependencies: [
                "Analysis", "ArtifactFormat", "Checkpoint", "LinearAlgebra", "ModelProfiles", "Optimizer", "Pipeline",
                "Quantization",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "deltaplan",
            dependencies: [
                "LinearAlgebra", "Checkpoint", "ModelProfiles", "Reporting", "Analysis", "Optimizer", "Quantization",
                "ArtifactFormat", "Pipeline", "Service",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "deltaplan-bench",
            dependencies: [
                "LinearAlgebra", "Checkpoint", "ContentHash", "ModelProfiles", "Reporting", "Analysis", "Optimizer",
                "Quantization", "Pipeline",
            ],
            path: "Benchmarks/deltaplan-bench"),

        // Test support, not API: a GGUF writer built from the spec, shared by the reader's and the
        // imatrix importer's tests.
        .target(name: "_GGUFTestSupport", path: "Tests/_GGUFTestSupport"),
        .testTarget(name: "LinearAlgebraTests", dependencies: ["LinearAlgebra"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "_GGUFTestSupport"]),
        .testTarget(name: "ModelProfilesTests", dependencies: ["ModelProfiles"]),
        .testTarget(name: "AnalysisTests", dependencies: ["Analysis", "LinearAlgebra", "Checkpoint", "ModelProfiles", "_GGUFTestSupport"]),
        .testTarget(name: "OptimizerTests", dependencies: ["Optimizer", "ModelProfiles", "LinearAlgebra", "Checkpoint", "ContentHash"]),
        .testTarget(
            name: "QuantizationTests",
            dependencies: [
                "Quantization", "ArtifactFormat", "LinearAlgebra", "Analysis", "Optimizer", "ModelProfiles", "Checkpoint",
                "ContentHash",
            ]),
        .testTarget(
            name: "PipelineTests",
            dependencies: [
                "Pipeline", "ArtifactFormat", "Quantization", "LinearAlgebra", "Analysis", "Optimizer", "ModelProfiles",
                "Checkpoint", "ContentHash",
            ]),
        .testTarget(
            name: "ServiceTests",
            dependencies: [
                "Service", "Analysis", "ArtifactFormat", "ModelProfiles", "Optimizer", "Pipeline", "Quantization",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        // The CLI in-process: `@testable import deltaplan` of the executable target (SwiftPM renames its
        // `@main` entry point when testing), driven through `DeltaPlan.parseAsRoot` and `run()`.
        .testTarget(
            name: "deltaplanTests",
            dependencies: [
                "deltaplan", "Analysis", "ModelProfiles", "Optimizer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
