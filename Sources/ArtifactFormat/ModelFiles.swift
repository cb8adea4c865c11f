import Checkpoint
import ContentHash
import Foundation

/// The non-tensor files of a Hugging Face model directory (configuration, tokenizer, generation
/// settings, chat template, processor, remote code) that an artifact carries from the fine-tuned
/// checkpoint, so that `merge` can write a directory `transformers` loads as it is.
///
/// **The rule** (`Docs/artifact-format.md`, "`model-files/`"): a top-level entry of the
/// fine-tuned checkpoint *directory* is carried when its name is in ``names`` or ends in one of
/// ``suffixes``; hidden names (a leading `.`) never are. An allowlist rather than "everything but
/// the weights", because a fine-tuned directory often holds files that must not reach the merged
/// model: `adapter_config.json` (with PEFT installed, transformers then also loads that adapter
/// onto the merged weights, applying the fine-tune twice), `pytorch_model*.bin` and its index (the
/// weights again, in another format), `training_args.bin`, `optimizer.pt`, `trainer_state.json`.
/// A single-file checkpoint (a `.safetensors` path) carries nothing.
///
/// What is read: a carried name must resolve to a regular file of at most ``maxFileBytes`` bytes.
/// A symbolic link is followed only when it resolves inside the checkpoint directory, or, for a
/// Hugging Face hub cache snapshot (`<repo>/snapshots/<revision>/`, where every file is a link),
/// inside that repository's `<repo>/blobs/`. Anything else with a carried name is an error naming
/// it (the merged model would be incomplete without it, and a link out of the directory could
/// copy an unrelated file into the artifact).
public enum ModelFiles {
    /// The artifact folder that holds them (`ARTIFACT/model-files/<name>`).
    public static let folder = "model-files"

    /// Carried by exact name.
    public static let names: Set<String> = [
        "config.json", "generation_config.json",
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
        "vocab.txt", "vocab.json", "merges.txt",
        "tokenizer.model", "spiece.model", "sentencepiece.model", "sentencepiece.bpe.model",
        "chat_template.jinja", "chat_template.json",
        "preprocessor_config.json", "processor_config.json",
    ]

    /// Carried by suffix: remote code (`configuration_*.py`, `modeling_*.py`, `tokenization_*.py`,
    /// which a `config.json` `auto_map` names) and tiktoken vocabularies.
    public static let suffixes = [".py", ".tiktoken"]

    /// The largest file carried (128 MiB; the largest tokenizer files published are about 35 MB).
    public static let maxFileBytes = 128 << 20

    /// Whether a top-level file named `name` of a fine-tuned directory is carried.
    public static func carries(_ name: String) -> Bool {
        !name.hasPrefix(".") && (names.contains(name) || suffixes.contains { name.hasSuffix($0) && name.count > $0.count })
    }

    /// Whether `name` may appear in a manifest: a plain file name (no `/`, no NUL, not hidden) that
    /// cannot replace a merged checkpoint's weights (`*.safetensors`, the index). Readers accept any
    /// such name, not only the ones this version of the rule carries.
    static func isValidRecordName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix(".") && !name.contains("/") && !name.utf8.contains(0)
            && !name.hasSuffix(".safetensors") && name != Checkpoint.indexFileName
    }

    /// One file to carry: its name in the checkpoint directory and the regular file it resolves to.
    package struct Source: Sendable, Equatable {
        package var name: String
        package var url: URL
    }

    /// The files ``carries(_:)`` selects in a checkpoint directory, sorted by name (UTF-8 order);
    /// none for a single-file checkpoint. Throws `.modelFile` naming the first file that does not
    /// resolve to a regular file inside the directory (or its hub-cache blobs), or is too large.
    package static func collect(in checkpoint: URL, maxFileBytes: Int = maxFileBytes) throws(ArtifactError) -> [Source] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return []
        }
        guard let directory = ResolvedPath(checkpoint.path) else {
            throw .io(path: checkpoint.path, reason: "cannot resolve the checkpoint directory")
        }
        let entries: [String]
        do { entries = try FileManager.default.contentsOfDirectory(atPath: checkpoint.path) } catch {
            throw .io(path: checkpoint.path, reason: "cannot list the checkpoint directory: \(error.localizedDescription)")
        }
        var roots = [directory]
        let parent = URL(fileURLWithPath: directory.path).deletingLastPathComponent()
        if parent.lastPathComponent == "snapshots",
           let blobs = ResolvedPath(parent.deletingLastPathComponent().appendingPathComponent("blobs").path) {
            roots.append(blobs)
        }
        var out: [Source] = []
        for name in entries.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) where carries(name) {
            let path = checkpoint.appendingPathComponent(name).path
            func refuse(_ reason: String) -> ArtifactError { .modelFile(path: path, reason: reason) }
            guard let resolved = ResolvedPath(path) else { throw refuse("is a broken symbolic link") }
            guard roots.contains(where: resolved.isWithin) else {
                throw refuse("is a symbolic link to \(resolved.path), outside the checkpoint directory; copy the file into the directory")
            }
            var info = stat()
            guard stat(resolved.path, &info) == 0 else { throw refuse("cannot be read: \(String(cString: strerror(errno)))") }
            guard info.st_mode & S_IFMT == S_IFREG else { throw refuse("is not a regular file") }
            guard Int(info.st_size) <= maxFileBytes else {
                throw refuse("has \(info.st_size) bytes, more than the \(maxFileBytes) a carried model file may have")
            }
            out.append(Source(name: name, url: URL(fileURLWithPath: resolved.path)))
        }
        return out
    }

    /// Copies a collected file into `folder` and returns its record (size and SHA-256 of the bytes
    /// written, which are the bytes read: one read).
    package static func copy(_ source: Source, into folder: URL, maxFileBytes: Int = maxFileBytes) throws(ArtifactError) -> ArtifactManifest.ModelFileRecord {
        let data: Data
        do { data = try Data(contentsOf: source.url) } catch {
            throw .modelFile(path: source.url.path, reason: "cannot be read: \(error.localizedDescription)")
        }
        guard data.count <= maxFileBytes else {
            throw .modelFile(path: source.url.path, reason: "has \(data.count) bytes, more than the \(maxFileBytes) a carried model file may have")
        }
        let target = folder.appendingPathComponent(source.name)
        try writeFile(data, to: target)
        return .init(name: source.name, size: data.count, sha256: Digest.sha256(data))
    }
}
