import ArtifactFormat
import ContentHash
import Foundation
import FuzzSupport
import Optimizer

/// One input: the bytes of an artifact's `manifest.json`, opened with `Artifact(at:)` in a
/// directory that holds, when `FUZZ_ARTIFACT` names a real artifact, that artifact's
/// `delta.safetensors` and `model-files/`. An artifact that opens is then read as `merge` reads it
/// (every matrix reconstructed, every carried tensor read).
///
/// An input that decodes as a manifest is tried with its checksums repaired (`planSHA256` of the
/// embedded plan as encoded, `delta.size` and `delta.sha256` of the real delta file): without the
/// repair almost every mutation dies at a checksum, and an attacker computes checksums, so the
/// checks behind them must hold on their own. One input in eight whose checksums needed repair is
/// also tried as given, so the checksum checks stay covered; inputs that do not decode, or need no
/// repair, are tried as given.
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Data(fuzzInput(data, size))
    let manifestURL = ArtifactDirectory.url.appendingPathComponent(ArtifactManifest.fileName)
    func tryAsGiven() {
        Scratch.write(input, to: manifestURL)
        open(ArtifactDirectory.url)
    }
    guard var manifest = try? JSONDecoder().decode(ArtifactManifest.self, from: input) else {
        tryAsGiven()
        return 0
    }
    let given = manifest
    if let plan = try? manifest.plan.encoded() { manifest.planSHA256 = Digest.sha256(plan) }
    if let delta = ArtifactDirectory.delta {
        manifest.delta.size = delta.size
        manifest.delta.sha256 = delta.sha256
    }
    guard manifest != given, let repaired = try? JSONEncoder().encode(manifest) else {
        tryAsGiven()
        return 0
    }
    if size % 8 == 0 { tryAsGiven() }
    Scratch.write(repaired, to: manifestURL)
    open(ArtifactDirectory.url)
    return 0
}

private func open(_ url: URL) {
    let artifact: Artifact
    do { artifact = try Artifact(at: url) } catch {
        precondition(!error.description.isEmpty)
        return
    }
    for matrix in artifact.manifest.matrices {
        do {
            let delta = try artifact.reconstruction(of: matrix)
            precondition(delta.rows == matrix.shape[0] && delta.columns == matrix.shape[1])
        } catch {
            precondition(!error.description.isEmpty)
        }
    }
    for carried in artifact.manifest.carried {
        do { _ = try artifact.tensorBytes(carried.name) } catch { precondition(!error.description.isEmpty) }
    }
}

/// The directory the manifests are tried in, set up once per process.
enum ArtifactDirectory {
    static let url: URL = {
        let url = Scratch.url("artifact")
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: url, withIntermediateDirectories: true)
            if let source = ProcessInfo.processInfo.environment["FUZZ_ARTIFACT"] {
                let from = URL(fileURLWithPath: source)
                try fm.copyItem(at: from.appendingPathComponent(ArtifactManifest.deltaFileName),
                                to: url.appendingPathComponent(ArtifactManifest.deltaFileName))
                let modelFiles = from.appendingPathComponent("model-files")
                if fm.fileExists(atPath: modelFiles.path) {
                    try fm.copyItem(at: modelFiles, to: url.appendingPathComponent("model-files"))
                }
            }
        } catch { fatalError("cannot set up the artifact directory from FUZZ_ARTIFACT: \(error)") }
        return url
    }()

    /// Size and SHA-256 of the real delta file, if there is one.
    static let delta: (size: Int, sha256: String)? = {
        let file = url.appendingPathComponent(ArtifactManifest.deltaFileName)
        guard let data = try? Data(contentsOf: file) else { return nil }
        return (data.count, Digest.sha256(data))
    }()
}
